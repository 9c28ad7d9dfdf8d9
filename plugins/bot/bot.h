/* The bot plugin's parts, shared by its files and its unit test: the rules read from rules/bots/ (known
 * fingerprints, user-agent classes, verified bots), the per-worker table of recent client behaviour (a
 * bounded LRU), and the scoring that combines them. Nothing here calls the host. */
#ifndef PC_BOT_H
#define PC_BOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What kind of client software a fingerprint or a user-agent belongs to. */
enum { BOT_KIND_NONE = 0, BOT_KIND_BROWSER, BOT_KIND_GRPC, BOT_KIND_LIBRARY, BOT_KIND_AUTOMATED };
const char *bot_kind_name(int kind);

/* ---- rules ---- */

enum { BOT_FP_JA4 = 0, BOT_FP_JA3 = 1, BOT_FP_H2 = 2 };

typedef struct bot_fp {
    char *value; /* JA4, JA3 MD5 or HTTP/2 fingerprint */
    char *label;
    uint32_t seq; /* load order: a later entry for the same fingerprint wins */
    uint8_t type;
    uint8_t kind;
    uint8_t score; /* 1-99; 1 marks a known-bad client */
} bot_fp;

typedef struct bot_ua {
    char *pattern; /* lower case */
    char *label;
    size_t len;
    bool anchored; /* "^pattern": at the start of the user-agent only */
    uint8_t kind;
} bot_ua;

typedef struct bot_net {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint8_t bits;
} bot_net;

typedef struct bot_verified {
    char *label;
    bot_ua ua;
    bot_net *nets;
    size_t nnets;
} bot_verified;

typedef struct bot_rules {
    bot_fp *fps;
    size_t nfps, capfps;
    bot_ua *uas;
    size_t nuas, capuas;
    bot_verified *ver;
    size_t nver, capver;
} bot_rules;

/* Limits: a rules directory is data users edit, so it is bounded like any other input. */
#define BOT_RULES_MAX_FILES 256
#define BOT_RULES_MAX_FILE_BYTES (16u << 20)
#define BOT_RULES_MAX_LINE 4096
#define BOT_RULES_MAX_FPS 200000
#define BOT_RULES_MAX_UAS 4096
#define BOT_RULES_MAX_VERIFIED 1024
#define BOT_RULES_MAX_NETS 256 /* per verified bot */

/* Every "*.rules" file of dir, in name order. 0, or -1 with "file:line: what" in err. */
int bot_rules_load_dir(bot_rules *r, const char *dir, char *err, size_t errlen);
/* One file's text (name is for messages). Call bot_rules_finish after the last one. */
int bot_rules_load_text(bot_rules *r, const char *name, const char *text, size_t len, char *err,
                        size_t errlen);
void bot_rules_finish(bot_rules *r); /* sorts for lookups */
void bot_rules_free(bot_rules *r);

const bot_fp *bot_rules_fp(const bot_rules *r, int type, const char *value);
/* The first user-agent rule matching ua (case-insensitive), or NULL. */
const bot_ua *bot_rules_ua(const bot_rules *r, const char *ua);
/* The first verified bot whose pattern matches ua, or NULL. */
const bot_verified *bot_rules_verified(const bot_rules *r, const char *ua);
bool bot_net_match(const bot_net *nets, size_t n, const uint8_t addr[16]);

/* "1.2.3.4" or an IPv6 address into 16 bytes (IPv4 mapped). 0 or -1. */
int bot_parse_ip(const char *s, uint8_t out[16]);

/* ---- behaviour: sliding windows and the client table ---- */

/* Counts in the current and previous fixed window; the sliding estimate weighs the previous one by how much
 * of it still overlaps the last `len` ms. Two counters instead of a ring of buckets: 16 bytes per window. */
typedef struct bot_window {
    uint64_t index; /* now / len of the current window */
    uint32_t cur, prev;
} bot_window;

void bot_window_add(bot_window *w, uint64_t now_ms, uint64_t len_ms, uint32_t n);
double bot_window_estimate(const bot_window *w, uint64_t now_ms, uint64_t len_ms);

typedef struct bot_client {
    uint8_t key[16];
    uint32_t hnext;          /* next in its hash bucket: index + 1, 0 = none */
    uint32_t newer, older;   /* LRU list: index + 1, 0 = none */
    bot_window rate;         /* requests started */
    bot_window done, errors; /* requests finished, and those that ended in an error status */
} bot_client;

typedef struct bot_clients bot_clients;

/* A table of at most cap clients, allocated once: it never grows, the least recently seen client is
 * evicted for a new one. NULL when cap is 0 or too large, or without memory. */
bot_clients *bot_clients_new(size_t cap);
void bot_clients_free(bot_clients *t);
/* The client's entry, now the most recently used; create: a new zeroed entry when absent. */
bot_client *bot_clients_get(bot_clients *t, const uint8_t key[16], bool create);
size_t bot_clients_count(const bot_clients *t);
size_t bot_clients_bytes(const bot_clients *t); /* everything the table holds */
/* The key a client address is counted under: IPv6 by its /64 (one host can hold a whole /64). */
void bot_client_key(const uint8_t addr[16], uint8_t key[16]);

/* ---- scoring ---- */

typedef struct bot_params {
    uint32_t rate_limit; /* requests per rate window before the score drops */
    uint32_t error_min;  /* finished requests in the error window before the ratio counts */
    double error_ratio;  /* errors / finished at or above which the score drops */
} bot_params;

typedef struct bot_input {
    const char *ja4, *ja3_hash, *h2fp; /* NULL when unknown */
    const char *user_agent;            /* NULL when absent */
    const uint8_t *addr;               /* 16 bytes, NULL when unknown */
    double rate;                       /* requests in the rate window, this one included */
    double done, errors;               /* in the error window */
} bot_input;

typedef struct bot_verdict {
    int score;         /* 1-99 */
    const char *class; /* "verified_bot", "automated", "likely_automated", "likely_human" */
    bool verified;
    char signals[384]; /* comma-separated, e.g. "fp:curl,ua:browser,ua_fp_mismatch" */
} bot_verdict;

void bot_evaluate(const bot_rules *r, const bot_params *p, const bot_input *in, bot_verdict *out);

#endif
