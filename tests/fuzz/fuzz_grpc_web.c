/* libFuzzer target for gRPC-Web -text request decoding. The first byte picks the chunk size; the
 * outcome (accepted or not, the decoded bytes) must match feeding it all at once, and an accepted
 * body must decode to what OpenSSL makes of each padded piece. */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_web.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

/* Decoded bytes into out (at least len bytes); -1 when refused. */
static long run(const uint8_t *in, size_t len, size_t chunk, uint8_t *out)
{
    pc_grpc_web *w = pc__grpc_web_new(true);
    if (!w) return -2;
    char err[128];
    long o = 0;
    for (size_t from = 0; from < len; from += chunk) {
        const uint8_t *d = in + from;
        size_t n = len - from < chunk ? len - from : chunk;
        if (pc__grpc_web_request_data(w, &d, &n, err, sizeof err) < 0) {
            o = -1;
            break;
        }
        memcpy(out + o, d, n);
        o += (long)n;
    }
    if (o >= 0 && pc__grpc_web_request_end(w, err, sizeof err) < 0) o = -1;
    pc__grpc_web_free(w);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    long whole = run(data, size, size ? size : 1, a);
    long cut = run(data, size, chunk, b);
    CHECK(whole == cut);
    if (whole > 0) CHECK(!memcmp(a, b, (size_t)whole));
    if (whole >= 0) {
        /* The reference: every quad through OpenSSL, pads dropped. */
        CHECK(size % 4 == 0);
        long o = 0;
        for (size_t i = 0; i < size; i += 4) {
            uint8_t q[4], r[4];
            memcpy(q, data + i, 4);
            int pad = (q[3] == '=') + (q[2] == '=');
            if (q[2] == '=') q[2] = 'A';
            if (q[3] == '=') q[3] = 'A';
            CHECK(EVP_DecodeBlock(r, q, 4) == 3);
            CHECK(!memcmp(a + o, r, (size_t)(3 - pad)));
            o += 3 - pad;
        }
        CHECK(o == whole);
    }
    free(a);
    free(b);
    return 0;
}
