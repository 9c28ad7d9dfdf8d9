/* The hold/pause queue (core/held.c): copies of messages in arrival order, the one a plugin paused
 * on, the byte count flow control relies on, and dropping them all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "held.h"

/* A message as the framer hands it: frame (prefix + payload as received), decoded data. */
static pc_grpc_message message(uint8_t *frame, const char *payload, uint32_t index)
{
    size_t len = strlen(payload);
    frame[0] = 0;
    frame[1] = frame[2] = frame[3] = 0;
    frame[4] = (uint8_t)len;
    memcpy(frame + 5, payload, len);
    return (pc_grpc_message){frame, len + 5, frame + 5, len, 0, index};
}

static void test_copy(void **state)
{
    (void)state;
    uint8_t frame[64];
    pc_grpc_message gm = message(frame, "hello", 3);
    pc_held_msg *h = pc__held_copy(&gm, true);
    assert_non_null(h);
    memset(frame, 0, sizeof frame); /* the framer's buffer is reused */
    assert_int_equal(h->frame_len, 10);
    assert_int_equal(h->frame[4], 5);
    assert_memory_equal(h->m.data, "hello", 5);
    assert_ptr_equal(h->m.data, h->frame + 5);
    assert_int_equal(h->m.len, 5);
    assert_int_equal(h->m.index, 3);
    assert_int_equal(h->m.response, 1);
    pc__held_free(h);
}

static void test_copy_compressed(void **state)
{
    (void)state;
    /* Compressed: the frame goes on as received, plugins judged the decoded payload kept after it. */
    uint8_t frame[] = {1, 0, 0, 0, 3, 0xaa, 0xbb, 0xcc};
    const char *decoded = "decoded!";
    pc_grpc_message gm = {frame, sizeof frame, (const uint8_t *)decoded, 8, 1, 0};
    pc_held_msg *h = pc__held_copy(&gm, false);
    assert_non_null(h);
    assert_int_equal(h->frame_len, sizeof frame);
    assert_memory_equal(h->frame, frame, sizeof frame);
    assert_ptr_equal(h->m.data, h->frame + sizeof frame);
    assert_memory_equal(h->m.data, decoded, 8);
    assert_int_equal(h->m.compressed, 1);
    assert_int_equal(h->m.response, 0);
    pc__held_free(h);
}

static void test_wrap(void **state)
{
    (void)state;
    uint8_t *body = malloc(4);
    memcpy(body, "body", 4);
    pc_held_msg *h = pc__held_wrap(body, 4);
    assert_non_null(h);
    assert_ptr_equal(h->frame, body); /* taken over, not copied */
    assert_ptr_equal(h->m.data, body);
    assert_int_equal(h->m.len, 4);
    pc__held_free(h);
}

static void test_queue(void **state)
{
    (void)state;
    pc_held_list l = {0};
    uint8_t frame[64];
    pc_grpc_message a = message(frame, "a", 0);
    l.cur = pc__held_copy(&a, false); /* the one a plugin paused on */
    assert_int_equal(pc__held_size(&l), 6);
    const char *payloads[] = {"bb", "ccc", "dddd"};
    for (uint32_t i = 0; i < 3; i++) {
        pc_grpc_message gm = message(frame, payloads[i], i + 1);
        pc__held_push(&l, pc__held_copy(&gm, false));
    }
    assert_int_equal(l.bytes, 7 + 8 + 9);
    assert_int_equal(pc__held_size(&l), 6 + 7 + 8 + 9);
    /* In arrival order. */
    pc_held_msg *h = pc__held_pop(&l);
    assert_int_equal(h->m.index, 1);
    assert_memory_equal(h->m.data, "bb", 2);
    assert_null(h->next);
    pc__held_free(h);
    assert_int_equal(l.bytes, 8 + 9);
    h = pc__held_pop(&l);
    assert_int_equal(h->m.index, 2);
    pc__held_free(h);
    h = pc__held_pop(&l);
    assert_int_equal(h->m.index, 3);
    assert_null(l.head);
    assert_null(l.tail);
    assert_int_equal(l.bytes, 0);
    /* A popped message may be queued again (it goes to the back). */
    pc__held_push(&l, h);
    assert_ptr_equal(l.head, h);
    assert_ptr_equal(l.tail, h);
    /* Dropping frees the current message and every one behind it. */
    pc__held_drop(&l);
    assert_null(l.cur);
    assert_null(l.head);
    assert_int_equal(pc__held_size(&l), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_copy_compressed),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
