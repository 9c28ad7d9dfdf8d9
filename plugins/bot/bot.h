/* The bot plugin's parts, shared by its files and its unit test: the rules read from rules/bots/ (known
 * fingerprints, user-agent classes, verified bots), recent client behaviour (the process-wide table, and in a
 * fleet each worker's cache of the counts in Redis), and the scoring that combines them. Nothing here calls
 * the host. */
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

/* A client stack (a gRPC or HTTP/2 implementation) and the User-Agent products it writes. */
typedef struct bot_stack {
    char *name; /* e.g. "grpc-core"; fingerprint labels name it */
    char **products;
    size_t nproducts;
} bot_stack;

typedef struct bot_rules {
    bot_stack *stacks;
    size_t nstacks, capstacks;
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
#define BOT_RULES_MAX_STACKS 256
#define BOT_RULES_MAX_PRODUCTS 64 /* per stack */

/* The directory of the shipped rules: `installed` if it is a directory, else `source` (empty: none), into
 * out. 0, or -1 with both paths tried in err. */
int bot_rules_shipped_dir(const char *installed, const char *source, char *out, size_t len, char *err,
                          size_t errlen);
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

/* ---- client stacks (stacks.c) ---- */

/* A product named in a User-Agent: "grpc-go" of "grpc-go/1.60.1". Points into the User-Agent. */
typedef struct bot_product {
    const char *p;
    size_t n;
} bot_product;

#define BOT_UA_MAX_PRODUCTS 16 /* read from one User-Agent */
#define BOT_UA_MAX_STACKS 8

/* The products of ua in the order written, comments ("(linux; chttp2)") skipped: at most max, from its
 * first 512 bytes. */
size_t bot_ua_products(const char *ua, bot_product *out, size_t max);
/* The stack (index into r->stacks) whose `stack` rule lists the product (case-insensitive), or -1. */
int bot_rules_product_stack(const bot_rules *r, const char *p, size_t n);
/* The stack of that name, or -1. */
int bot_rules_stack(const bot_rules *r, const char *name, size_t n);
/* The stacks ua names, each once, in the order written. */
size_t bot_ua_stacks(const bot_rules *r, const char *ua, int *out, size_t max);
/* Whether the fingerprint's label names a declared stack; whether stack is one of those it names. */
bool bot_fp_is_stack(const bot_rules *r, const bot_fp *f);
bool bot_fp_in_stack(const bot_fp *f, const char *stack);

/* "1.2.3.4" or an IPv6 address into 16 bytes (IPv4 mapped). 0 or -1. */
int bot_parse_ip(const char *s, uint8_t out[16]);

/* ---- behaviour: sliding windows and the client tables ---- */

/* Counts in the current and previous fixed window; the sliding estimate weighs the previous one by how much
 * of it still overlaps the last `len` ms. Two counters instead of a ring of buckets: 16 bytes per window. */
typedef struct bot_window {
    uint64_t index; /* now / len of the current window */
    uint32_t cur, prev;
} bot_window;

void bot_window_add(bot_window *w, uint64_t now_ms, uint64_t len_ms, uint32_t n);
double bot_window_estimate(const bot_window *w, uint64_t now_ms, uint64_t len_ms);

/* The table's part of every entry (clients.c): the client's key and the entry's links. */
typedef struct bot_slot {
    uint8_t key[16];
    uint32_t hnext;        /* next in its hash bucket: index + 1, 0 = none */
    uint32_t newer, older; /* LRU list: index + 1, 0 = none */
} bot_slot;

/* A client's recent behaviour, as the process-wide table holds it. */
typedef struct bot_client {
    bot_slot slot;
    bot_window rate;         /* requests started */
    bot_window done, errors; /* requests finished, and those that ended in an error status */
} bot_client;

typedef struct bot_clients bot_clients;

/* A table of at most cap entries of entry_size bytes, each starting with a bot_slot, allocated once: it never
 * grows, the least recently seen client is evicted for a new one. NULL when cap is 0 or too large,
 * entry_size too small, or without memory. */
bot_clients *bot_clients_new(size_t cap, size_t entry_size);
void bot_clients_free(bot_clients *t);
/* The client's entry, now the most recently used; create: a new entry (zeroed but for its key) when absent.
 * NULL when absent and !create. */
void *bot_clients_get(bot_clients *t, const uint8_t key[16], bool create);
size_t bot_clients_count(const bot_clients *t);
size_t bot_clients_bytes(const bot_clients *t); /* everything the table holds */
/* Entries never move: an entry's position, and the entry at a position (NULL: not used yet), for lists of
 * entries kept beside the table. The entry at a position may since hold another client. */
size_t bot_clients_index(const bot_clients *t, const void *entry);
void *bot_clients_at(bot_clients *t, size_t i);
/* The key a client address is counted under: IPv6 by its /64 (one host can hold a whole /64). */
void bot_client_key(const uint8_t addr[16], uint8_t key[16]);
/* A seeded hash of a key, and a random seed: clients choose their addresses, so they must not be able to
 * choose collisions. */
uint64_t bot_key_hash(const uint8_t key[16], const uint64_t seed[2]);
void bot_random_seed(uint64_t seed[2]);

/* What the score reads of a client's behaviour: requests in the rate window, this one included; requests
 * finished in the error window, and those of them that ended in an error status. */
typedef struct bot_estimate {
    double rate, done, errors;
} bot_estimate;

/* The process-wide behaviour table (table.c), shared by every worker: shards of a bot_clients table,
 * each behind its own mutex, at most max_clients clients in all. Owned by the plugin context. */
typedef struct bot_table bot_table;

/* NULL when max_clients is 0 or too large, or without memory. */
bot_table *bot_table_new(size_t max_clients, uint64_t rate_window_ms, uint64_t error_window_ms);
void bot_table_free(bot_table *t);
/* A request the client started (the client made the most recently seen, or added): its estimate after it. */
void bot_table_started(bot_table *t, const uint8_t key[16], uint64_t now_ms, bot_estimate *out);
/* A request of the client finished (error: with an error status); nothing when it was evicted meanwhile. */
void bot_table_finished(bot_table *t, const uint8_t key[16], uint64_t now_ms, bool error);
size_t bot_table_count(bot_table *t);
size_t bot_table_bytes(const bot_table *t);
size_t bot_table_shards(const bot_table *t);

/* A worker's cache of a fleet's counts (fleet_cache.c): per client, what this worker counted and has not
 * sent to Redis yet, what it sent and is waiting for an answer to, and the fleet's totals in the last
 * answer. Bounded (the least recently seen client is evicted), pure bookkeeping: fleet.c does the I/O. */
enum { BOT_N_RATE = 0, BOT_N_DONE = 1, BOT_N_ERRORS = 2 };

typedef struct bot_fleet_entry {
    bot_slot slot;
    uint32_t pending[3];   /* by BOT_N_*: counted by this worker, not sent yet */
    uint32_t sent[3];      /* in the request that is out */
    uint32_t total[3];     /* the fleet's totals in the last answer */
    uint32_t seq;          /* of the request that is out, 0: none */
    uint32_t answer_epoch; /* the cache's epoch when total was answered, 0: never */
    uint64_t answer_ms;    /* when */
} bot_fleet_entry;

typedef struct bot_fleet_cache bot_fleet_cache;

bot_fleet_cache *bot_fleet_cache_new(size_t cap);
void bot_fleet_cache_free(bot_fleet_cache *c);
/* Counts n (by BOT_N_*) for the client, queued for the next flush: a new entry when absent and create, else
 * nothing when absent. The entry, or NULL. */
bot_fleet_entry *bot_fleet_cache_add(bot_fleet_cache *c, const uint8_t key[16], const uint32_t n[3],
                                     bool create);
/* The fleet's counts for the entry as this worker knows them (by BOT_N_*): the last answer's totals plus what
 * it counted since. false when there is no answer younger than fresh_ms, or none since the last drop. */
bool bot_fleet_cache_view(const bot_fleet_cache *c, const bot_fleet_entry *e, uint64_t now_ms,
                          uint64_t fresh_ms, double out[3]);
/* A flush: bot_fleet_cache_queued() times bot_fleet_cache_pop(), which gives the next queued entry to send
 * (it has counts, and no request out), or NULL (nothing to send, or a request is out: it stays queued). */
size_t bot_fleet_cache_queued(const bot_fleet_cache *c);
bot_fleet_entry *bot_fleet_cache_pop(bot_fleet_cache *c);
/* Moves the entry's pending counts to sent: the sequence number of the request that carries them. */
uint32_t bot_fleet_cache_send(bot_fleet_cache *c, bot_fleet_entry *e);
/* The answer to request seq for the client: the fleet's totals, or NULL when the request failed (what it
 * carried is dropped: the process-wide table counted it). Nothing when the client was evicted meanwhile. */
void bot_fleet_cache_answer(bot_fleet_cache *c, const uint8_t key[16], uint32_t seq, const uint32_t *totals,
                            uint64_t now_ms);
/* The store is unavailable: every pending count is dropped (the process-wide table has them), and no answer
 * from before counts any more. */
void bot_fleet_cache_drop(bot_fleet_cache *c);
size_t bot_fleet_cache_bytes(const bot_fleet_cache *c);
/* The estimate the score reads in a fleet: the larger of the process's and the fleet's (the process's own
 * calls of the last flush interval may not be in the fleet's yet); the error ratio from the one that saw
 * more finished requests. */
void bot_estimate_merge(bot_estimate *local, const double fleet[3]);

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
    const char *const *expect;         /* the zone's expect_clients (stack names), NULL: any */
    size_t nexpect;
} bot_input;

typedef struct bot_verdict {
    int score;         /* 1-99 */
    const char *class; /* "verified_bot", "automated", "likely_automated", "likely_human" */
    bool verified;
    char signals[384]; /* comma-separated, e.g. "fp:curl,ua:browser,ua_fp_mismatch" */
} bot_verdict;

void bot_evaluate(const bot_rules *r, const bot_params *p, const bot_input *in, bot_verdict *out);

#endif
