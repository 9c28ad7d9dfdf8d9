/* Fuzz target for the WAF fast path against libmodsecurity: the CRS (paranoia level 1, or
 * PC_WAF_FUZZ_PARANOIA) is loaded once; each input becomes one gRPC request that both paths judge,
 * and the target aborts when the fast path calls clean what libmodsecurity reports on.
 *
 * Input layout: a flags byte, then parts separated by 0x1e (the ASCII record separator):
 *   part 0   the user-agent header value
 *   part 1   the value of a second header, whose name flags bits 2-3 choose (cookie, referer,
 *            x-api-key, accept)
 *   part 2-7 values of string fields "a", "b", "c.d", "e", "f", "g" (bytes fields with flag bit 0)
 * Flag bit 1: no message (a headers-only transaction). Flag bit 4: the message is the second of its
 * call (a stream), judged by the trace of a benign first one, and the target also aborts when that
 * verdict differs from the one of a call of its own. Header values lose CR, LF and NUL, which
 * HTTP/2 does not let through to plugins. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "waf_pair.h"

#define SEP 0x1e
#define MAX_PARTS 8

static waf_pair_env env;
static int loaded;
static unsigned long seq;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *pl = getenv("PC_WAF_FUZZ_PARANOIA");
    int paranoia = pl && *pl >= '1' && *pl <= '4' ? *pl - '0' : 1;
    char err[2048];
    char *yaml = waf_pair_default_config("/usr/share/modsecurity-crs", paranoia, PC_WAF_DIFF_RULES);
    if (!yaml || waf_pair_load(&env, "(fuzz config)", yaml, strlen(yaml), "/", err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_waf_fast_path: cannot load the WAF: %s\n", yaml ? err : "out of memory");
        abort();
    }
    free(yaml);
    if (!env.profile->fast) {
        fprintf(stderr, "fuzz_waf_fast_path: no fast path for the CRS: %s\n",
                env.profile->fast_error ? env.profile->fast_error : "?");
        abort();
    }
    loaded = 1;
    return 0;
}

static void print_value(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "  %s: \"", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loaded || size < 1) return 0;
    uint8_t flags = data[0];
    const char *part[MAX_PARTS] = {0};
    size_t plen[MAX_PARTS] = {0}, nparts = 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (nparts < MAX_PARTS) {
        const char *sep = memchr(p, SEP, (size_t)(end - p));
        part[nparts] = p;
        plen[nparts] = sep ? (size_t)(sep - p) : (size_t)(end - p);
        nparts++;
        if (!sep) break;
        p = sep + 1;
    }

    /* header values: copies without CR, LF and NUL */
    char *hv[2] = {NULL, NULL};
    size_t hl[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        hv[i] = malloc(plen[i] + 1);
        if (!hv[i]) goto out;
        for (size_t k = 0; k < plen[i]; k++)
            if (part[i][k] != '\r' && part[i][k] != '\n' && part[i][k] != '\0') hv[i][hl[i]++] = part[i][k];
        hv[i][hl[i]] = '\0';
    }
    static const char *const second[] = {"cookie", "referer", "x-api-key", "accept"};
    const char *second_name = second[(flags >> 2) & 3];
    waf_kv headers[] = {
        {"host", 4, "api.example.com", 15},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"user-agent", 10, hv[0], hl[0]},
        {second_name, strlen(second_name), hv[1], hl[1]},
        {"grpc-accept-encoding", 20, "identity,deflate,gzip", 21},
    };
    waf_facts f = {.client_ip = "192.0.2.10",
                   .client_port = 50000,
                   .method = "POST",
                   .uri = "/fuzz.v1.Target/Call",
                   .headers = headers,
                   .nheaders = sizeof headers / sizeof *headers};
    static const char *const paths[] = {"a", "b", "c.d", "e", "f", "g"};
    pc_field fields[MAX_PARTS];
    long nf = 0;
    for (size_t i = 2; i < nparts; i++)
        fields[nf++] = (pc_field){.path = paths[i - 2],
                                  .kind = flags & 1 ? PC_FIELD_BYTES : PC_FIELD_STRING,
                                  .str = part[i],
                                  .str_len = plen[i]};
    char txid[32];
    snprintf(txid, sizeof txid, "fuzz-%lu", ++seq);
    waf_pair_result r;
    env.second_message = (flags & 0x10) != 0;
    if (waf_pair_run(&env, &f, fields, nf, (flags & 2) != 0, txid, &r) == 0 &&
        (r.mismatch || r.trace_differs)) {
        fprintf(stderr,
                "fuzz_waf_fast_path: %s: the fast path said clean, libmodsecurity reported status %d "
                "score %d rules",
                r.mismatch ? "MISMATCH" : "TRACE DIFFERS (a call of its own did not say clean)", r.rep.status,
                r.rep.score);
        for (size_t i = 0; i < r.rep.nids; i++)
            fprintf(stderr, " %u", r.rep.ids[i]);
        fprintf(stderr, "\n");
        print_value("user-agent", hv[0], hl[0]);
        print_value(second_name, hv[1], hl[1]);
        for (long i = 0; i < nf; i++)
            print_value(fields[i].path, fields[i].str, fields[i].str_len);
        if (flags & 2) fprintf(stderr, "  (no message)\n");
        abort();
    }
out:
    free(hv[0]);
    free(hv[1]);
    return 0;
}
