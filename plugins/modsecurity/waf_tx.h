/* One libmodsecurity transaction over a request as the WAF presents it (connection, request line,
 * headers, and a body), and what the engine reported: the engine of record that the fast path must
 * agree with. Runs on the calling thread; the plugin calls it on the thread pool, the differential
 * tests and fuzz targets call it directly. */
#ifndef PC_WAF_TX_H
#define PC_WAF_TX_H

#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <stddef.h>
#include <stdint.h>

#define WAF_MAX_IDS 32 /* rule ids kept per report */

/* A name and a value of given lengths (values may hold NUL bytes). */
typedef struct waf_kv {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} waf_kv;

/* What the rules see of a request besides its body: the same for both paths. */
typedef struct waf_facts {
    const char *client_ip;
    int client_port;
    const char *method;    /* "POST" */
    const char *uri;       /* "/pkg.Service/Method", with the query string if any */
    const waf_kv *headers; /* as sent, lower-case names, pseudo-headers excluded, Host included */
    size_t nheaders;
} waf_facts;

struct waf_conf;

/* What one transaction reported: filled by the engine's log callback and interventions. */
typedef struct waf_report {
    uint32_t ids[WAF_MAX_IDS];
    size_t nids;
    int score;     /* inbound anomaly score, -1 when no rule reported one */
    int out_score; /* outbound (response) anomaly score, -1 likewise */
    int status;    /* HTTP status of a disruptive intervention; 0: none */
    const struct waf_conf *conf;
} waf_report;

void waf_report_reset(waf_report *rep, const struct waf_conf *c);
/* 1 when rep lists rule `id`. */
int waf_report_has(const waf_report *rep, uint32_t id);
/* 1 when the transaction reported nothing at all: no rule message, no score, no intervention. */
int waf_report_clean(const waf_report *rep);
/* Adds an id once (bounded by WAF_MAX_IDS). */
void waf_ids_add(uint32_t *ids, size_t *n, uint32_t id);

/* The engine's log callback (msc_set_log_cb): data is the transaction's waf_report. */
void waf_tx_log_cb(void *data, const void *msg);

/* A request transaction: connection, URI, headers, phase 1, then the body (when body_len > 0 or
 * `with_body`) and phase 2, and phase 5 when something was reported. Returns 0, or -1 when the
 * engine could not start a transaction. */
int waf_tx_request(ModSecurity *msc, RulesSet *rules, const char *txid, const waf_facts *f, const char *body,
                   size_t body_len, waf_report *rep);

/* A response transaction for one response message: phase 1 with the request facts (it sets up
 * the CRS variables), then response headers, body, phases 3 and 4. */
int waf_tx_response(ModSecurity *msc, RulesSet *rules, const char *txid, const waf_facts *f, int status,
                    const char *body, size_t body_len, waf_report *rep);

#endif
