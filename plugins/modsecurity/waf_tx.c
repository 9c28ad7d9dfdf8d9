/* Running one libmodsecurity transaction and reading what it reported. The log callback parses
 * rule messages into a waf_report; verdicts come from msc_intervention() only. */
#include "waf_tx.h"

#include <modsecurity/intervention.h>
#include <modsecurity/transaction.h>
#include <stdlib.h>
#include <string.h>

#include "waf_config.h"

void waf_report_reset(waf_report *rep, const struct waf_conf *c)
{
    memset(rep, 0, sizeof *rep);
    rep->score = rep->out_score = -1;
    rep->conf = c;
}

void waf_ids_add(uint32_t *ids, size_t *n, uint32_t id)
{
    for (size_t i = 0; i < *n; i++)
        if (ids[i] == id) return;
    if (*n < WAF_MAX_IDS) ids[(*n)++] = id;
}

int waf_report_has(const waf_report *rep, uint32_t id)
{
    for (size_t i = 0; i < rep->nids; i++)
        if (rep->ids[i] == id) return 1;
    return 0;
}

int waf_report_clean(const waf_report *rep)
{
    return !rep->status && !rep->nids && rep->score < 0 && rep->out_score < 0;
}

/* "Matched "Operator `Gt' with parameter `0' against variable `TX:ANOMALY_SCORE' (Value: `12' )":
 * the text right after the first `Matched "` comes from the rule itself (operator, parameter,
 * variable name), so a score read there cannot be supplied by the request. */
static int score_of(const char *text, const char *op)
{
    static const char var[] = "' against variable `TX:ANOMALY_SCORE' (Value: `";
    static const char ovar[] = "' against variable `TX:OUTBOUND_ANOMALY_SCORE' (Value: `";
    const char *m = strstr(text, "Matched \"Operator `");
    if (!m) return -1;
    m += strlen("Matched \"Operator `");
    size_t ol = strlen(op);
    if (strncmp(m, op, ol) != 0 || strncmp(m + ol, "' with parameter `", 18) != 0) return -1;
    m += ol + 18;
    while (*m >= '0' && *m <= '9')
        m++;
    if (!strncmp(m, var, sizeof var - 1)) return atoi(m + sizeof var - 1);
    if (!strncmp(m, ovar, sizeof ovar - 1))
        return -2 - atoi(m + sizeof ovar - 1); /* outbound, encoded below -1 */
    return -1;
}

/* Takes rule ids and scores from one rule message. The message quotes matched values verbatim,
 * so ids are read only from the exact `"] [line "N"] [id "N"] [rev "` sequence and only when they
 * name a loaded rule: a request can at most add ids of real rules to its own log line. Verdicts
 * never depend on this text, only on msc_intervention(). */
static void report_text(waf_report *rep, const char *text)
{
    int own = 0;
    for (const char *p = text; (p = strstr(p, "\"] [id \"")); p += 8) {
        const char *q = p + 8;
        char *end;
        unsigned long id = strtoul(q, &end, 10);
        if (end == q || strncmp(end, "\"] [rev \"", 9) != 0) continue;
        /* the field before must be [line "<digits>"] */
        const char *l = p;
        while (l > text && l[-1] >= '0' && l[-1] <= '9')
            l--;
        if (l == p || l - text < 8 || strncmp(l - 8, " [line \"", 8) != 0) continue;
        if (id == WAF_RULE_SCORE || id == WAF_RULE_RESP_SCORE || id == 949110 || id == 959100) {
            own = 1;
            if (id == WAF_RULE_SCORE || id == WAF_RULE_RESP_SCORE)
                continue; /* bookkeeping, not a detection */
        }
        if (!rep->conf || waf_conf_known_id(rep->conf, (uint32_t)id))
            waf_ids_add(rep->ids, &rep->nids, (uint32_t)id);
    }
    if (!own) return;
    int s = score_of(text, "Gt");
    if (s == -1) s = score_of(text, "Ge");
    if (s >= 0 && s > rep->score)
        rep->score = s;
    else if (s <= -2 && -2 - s > rep->out_score)
        rep->out_score = -2 - s;
}

void waf_tx_log_cb(void *data, const void *msg)
{
    if (data && msg) report_text(data, msg);
}

static int intervened(Transaction *t, waf_report *rep)
{
    ModSecurityIntervention it = {200, 0, NULL, NULL, 0};
    if (msc_intervention(t, &it) && it.disruptive) {
        rep->status = it.status >= 400 ? it.status : 403;
        if (it.log) report_text(rep, it.log);
    }
    free(it.log);
    free(it.url);
    return rep->status != 0;
}

/* Connection, URI and headers, then phase 1. */
static int tx_start(Transaction *t, const waf_facts *f, waf_report *rep)
{
    /* The edge's own address is not known to plugins; rules rarely look at SERVER_ADDR. */
    msc_process_connection(t, f->client_ip, f->client_port, "0.0.0.0", 0);
    if (intervened(t, rep)) return -1;
    msc_process_uri(t, f->uri, f->method, "2.0");
    for (size_t i = 0; i < f->nheaders; i++)
        msc_add_n_request_header(t, (const unsigned char *)f->headers[i].name, f->headers[i].name_len,
                                 (const unsigned char *)f->headers[i].value, f->headers[i].value_len);
    msc_process_request_headers(t);
    return intervened(t, rep) ? -1 : 0;
}

/* Phase 5 (correlation rules, the audit log) only when a rule reported something: otherwise the
 * audit log (relevant transactions only) would not record it and the correlation rules have
 * nothing to correlate. */
static void tx_end(Transaction *t, const waf_report *rep)
{
    if (rep->status || rep->nids || rep->score > 0 || rep->out_score > 0) msc_process_logging(t);
    msc_transaction_cleanup(t);
}

int waf_tx_request(ModSecurity *msc, RulesSet *rules, const char *txid, const waf_facts *f, const char *body,
                   size_t body_len, waf_report *rep)
{
    Transaction *t = msc_new_transaction_with_id(msc, rules, (char *)txid, rep);
    if (!t) return -1;
    if (tx_start(t, f, rep) == 0) {
        if (body_len) msc_append_request_body(t, (const unsigned char *)body, body_len);
        if (!intervened(t, rep)) {
            msc_process_request_body(t);
            intervened(t, rep);
        }
    }
    tx_end(t, rep);
    return 0;
}

int waf_tx_response(ModSecurity *msc, RulesSet *rules, const char *txid, const waf_facts *f, int status,
                    const char *body, size_t body_len, waf_report *rep)
{
    Transaction *t = msc_new_transaction_with_id(msc, rules, (char *)txid, rep);
    if (!t) return -1;
    if (tx_start(t, f, rep) == 0) {
        /* Phase 1 sets up the CRS variables the response rules read (paranoia level, thresholds);
         * the request rules of phase 2 ran in the request's own transactions. */
        msc_add_n_response_header(t, (const unsigned char *)"content-type", 12,
                                  (const unsigned char *)"application/json", 16);
        msc_process_response_headers(t, status, "HTTP 2.0");
        if (body_len) msc_append_response_body(t, (const unsigned char *)body, body_len);
        if (!intervened(t, rep)) {
            msc_process_response_body(t);
            intervened(t, rep);
        }
    }
    tx_end(t, rep);
    return 0;
}
