/* Messages held in one direction of a call while a plugin holds it: the one it paused on, and those
 * that arrived behind it, in order. Each is a copy (the gRPC framer's buffers are transient). The
 * list is bounded by flow control: held bytes are not acknowledged to their sender. */
#ifndef PC_HELD_H
#define PC_HELD_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_frame.h"

typedef struct pc_held_msg {
    struct pc_held_msg *next;
    pc_message m;     /* what the chain sees: points into frame */
    uint8_t *frame;   /* the bytes to pass on (prefix and payload as received), then the decoded payload */
    size_t frame_len; /* of the bytes to pass on */
} pc_held_msg;

typedef struct pc_held_list {
    pc_held_msg *cur;         /* the message a plugin paused on, until it resumes */
    pc_held_msg *head, *tail; /* those that arrived behind it */
    size_t bytes;             /* frame bytes of head..tail */
} pc_held_list;

/* A copy of a message from the framer; NULL out of memory. */
pc_held_msg *pc__held_copy(const pc_grpc_message *gm, bool response);
/* A whole plain body (malloc'ed, taken over on success) as one request message; NULL out of memory
 * (the body stays the caller's). */
pc_held_msg *pc__held_wrap(uint8_t *body, size_t len);
void pc__held_free(pc_held_msg *h);

void pc__held_push(pc_held_list *l, pc_held_msg *h);
/* The first message waiting behind the current one (the list must not be empty). */
pc_held_msg *pc__held_pop(pc_held_list *l);
/* Bytes held: the current message and those behind it. */
size_t pc__held_size(const pc_held_list *l);
/* Free every message, the current one included. */
void pc__held_drop(pc_held_list *l);

#endif
