/* Lua page rules: what the plugin's files share. The plugin context (lr_conf) holds the rule files'
 * text, read once at init; each worker compiles them into its own sandboxed Lua state (lr_state), so
 * nothing Lua is ever shared between threads. */
#ifndef PC_LUA_RULES_H
#define PC_LUA_RULES_H

#include <lua.h>
#include <portcullis/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "match.h"

typedef struct lr_file {
    char *path; /* as shown in messages: the configured dir as written, then the file name */
    char *src;
    size_t len;
} lr_file;

/* The plugin context: immutable after init, read by every worker. */
typedef struct lr_conf {
    const pc_host *host;
    const void *handle;
    char *dir;      /* resolved against the config file's directory */
    lr_file *files; /* in file-name order */
    size_t nfiles;
    size_t max_memory;    /* bytes per Lua state */
    int max_instructions; /* VM instructions per hook call */
} lr_conf;

typedef struct lr_rule {
    char *name;       /* as given, or "<file>#<n>" */
    const char *file; /* its file's display path (owned by the conf) */
    int line;         /* where its first hook function starts, for messages */
    lr_pattern *pats; /* any of them matches; none: every request */
    size_t npats;
    int on_request, on_message, bot_score; /* registry references, LUA_NOREF when absent */
} lr_rule;

/* One Lua state and its limits: a worker's, or the throwaway one init validates the files with.
 * Only ever touched by the thread that owns it. */
typedef struct lr_state {
    const lr_conf *conf;
    lua_State *L;
    size_t used; /* bytes the allocator has handed out */
    bool mem_refused;
    bool over_budget;
    char budget_where[160]; /* file:line where the budget ran out */
    uint32_t epoch;         /* bumped when the state is rebuilt: older request references are void */
    lr_rule *rules;
    size_t nrules;
    size_t n_request, n_message, n_bot; /* rules with each hook */

    /* Registry slots and shared tables made when the state is opened. */
    int slot_req, slot_msg; /* the req / msg table of the hook running now (false between hooks) */
    int mt_req, mt_msg, mt_headers, mt_env, no_captures;

    /* The hook running now; NULL between hooks, so a req kept past its hook cannot reach the request. */
    pc_request *r;
    const pc_message *m;
    const lr_rule *rule;
    bool denied;
} lr_state;

/* Per-request state (the core zeroes it): the request's `req` table, kept from on_request to on_message
 * so rules can leave notes for later hooks; released in on_log. */
typedef struct lr_reqstate {
    int ref; /* registry reference, 0 none */
    uint32_t epoch;
} lr_reqstate;

/* sandbox.c */
/* Open a state with the sandboxed libraries and compile every rule file. -1 with "file:line: what"
 * in err. On failure the state is closed. */
int lr_state_open(lr_state *s, const lr_conf *conf, char *err, size_t errlen);
void lr_state_close(lr_state *s);
lr_state *lr_state_of(lua_State *L);
/* Call the function below nargs arguments on the stack with a fresh instruction budget; pcall status.
 * On error the message (with file:line) is on the stack. */
int lr_call(lr_state *s, int nargs, int nresults);
/* The error on top of the stack as text, without running any Lua code (no __tostring). */
const char *lr_error_text(lr_state *s, int status, char *buf, size_t len);

/* bridge.c */
/* Make the req/msg metatables and registry slots (called protected, while the state opens). */
void lr_bridge_setup(lua_State *L, lr_state *s);
/* Push the request's req table, making it on first use and keeping it in rs for the message hooks
 * (protected context only). */
void lr_push_req(lr_state *s, lr_reqstate *rs);
/* Push a msg table for s->m (protected context only). */
void lr_push_msg(lr_state *s);
/* Set req.captures and req.rule for the rule about to run (protected context only). */
void lr_set_rule_fields(lr_state *s, int req, const lr_rule *rule, const lr_span *caps, unsigned ncaps);
#endif
