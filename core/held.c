/* The hold/pause queue of one direction of a call: copies of messages in arrival order, and the
 * one a plugin paused on. */
#include "held.h"

#include <stdlib.h>
#include <string.h>

pc_held_msg *pc__held_copy(const pc_grpc_message *gm, bool response)
{
    pc_held_msg *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    /* A compressed message keeps its decoded payload after the frame: plugins judged that one. */
    size_t extra = gm->compressed ? gm->len : 0;
    h->frame = malloc(gm->frame_len + extra + 1);
    if (!h->frame) {
        free(h);
        return NULL;
    }
    memcpy(h->frame, gm->frame, gm->frame_len);
    if (extra) memcpy(h->frame + gm->frame_len, gm->data, gm->len);
    h->frame_len = gm->frame_len;
    h->m = (pc_message){extra ? h->frame + gm->frame_len : h->frame + 5, gm->len, gm->index, gm->compressed,
                        response};
    return h;
}

pc_held_msg *pc__held_wrap(uint8_t *body, size_t len)
{
    pc_held_msg *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->frame = body;
    h->frame_len = len;
    h->m = (pc_message){h->frame, h->frame_len, 0, 0, 0};
    return h;
}

void pc__held_free(pc_held_msg *h)
{
    if (!h) return;
    free(h->frame);
    free(h);
}

void pc__held_push(pc_held_list *l, pc_held_msg *h)
{
    h->next = NULL;
    if (l->tail)
        l->tail->next = h;
    else
        l->head = h;
    l->tail = h;
    l->bytes += h->frame_len;
}

pc_held_msg *pc__held_pop(pc_held_list *l)
{
    pc_held_msg *h = l->head;
    l->head = h->next;
    if (!l->head) l->tail = NULL;
    l->bytes -= h->frame_len;
    h->next = NULL;
    return h;
}

size_t pc__held_size(const pc_held_list *l)
{
    return l->bytes + (l->cur ? l->cur->frame_len : 0);
}

void pc__held_drop(pc_held_list *l)
{
    if (l->cur) l->cur->next = l->head;
    for (pc_held_msg *h = l->cur ? l->cur : l->head, *n; h; h = n) {
        n = h->next;
        pc__held_free(h);
    }
    *l = (pc_held_list){0};
}
