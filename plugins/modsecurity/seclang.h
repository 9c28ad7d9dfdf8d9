/* A reader of SecLang (ModSecurity v3 rule files) into a plain rule model, for the WAF fast path:
 * it sees the same files in the same order as libmodsecurity, and keeps every rule, marker and
 * exclusion directive so the fast path can replay what the engine would do. It does not judge
 * anything and does not need to understand every directive: what it does not model is recorded
 * (sl_ruleset.unsupported) so the fast path can refuse to cover what depends on it. */
#ifndef PC_WAF_SECLANG_H
#define PC_WAF_SECLANG_H

#include <stddef.h>
#include <stdint.h>

/* One target of a rule: `ARGS`, `REQUEST_HEADERS:User-Agent`, `!REQUEST_COOKIES:/__utm/`,
 * `&TX:foo`, `XML:/ *` (an XPath). */
typedef struct sl_var {
    char *collection; /* upper-cased: "ARGS", "REQUEST_HEADERS", "TX", ... */
    char *key;        /* the part after ':' without surrounding quotes; NULL for the whole collection.
                       * A regex key keeps its slashes: "/__utm/". */
    int key_regex;    /* the key is /.../ (key holds it with the slashes) */
    int count;        /* &VAR */
    int exclude;      /* !VAR: removes matching members from the rule's other targets */
    int key_quoted;   /* the key was written in single quotes (`REQUEST_HEADERS:'User-Agent'`): key holds
                       * it without them, but libmodsecurity 3.0.9 keeps the quotes as part of the name,
                       * so such a target selects nothing there */
} sl_var;

/* One action: `name` or `name:value`; quotes around the value removed, escapes kept as written. */
typedef struct sl_action {
    char *name;  /* lower-cased: "setvar", "ctl", "skipafter", "t", "nolog", ... */
    char *value; /* NULL when the action has none */
} sl_action;

typedef enum { SL_RULE = 0, SL_ACTION, SL_MARKER } sl_kind;

typedef struct sl_rule {
    sl_kind kind;
    uint32_t id;  /* 0 for chain links after the first and for markers */
    int phase;    /* 1-5; "request" = 2, "response" = 4, "logging" = 5; links inherit the head's;
                     default 1 when absent: libmodsecurity 3 puts a rule without phase in its
                     request-headers phase (ModSecurity 2 used 2). phase:0 (connection) is accepted
                     as libmodsecurity does. Markers: 0 (a marker stands in every phase). */
    char *marker; /* SL_MARKER: its name */
    sl_var *vars; /* SL_RULE */
    size_t nvars;
    char *op;          /* lower-cased without '@': "rx", "pm", "streq", ...; "rx" when written bare */
    char *op_param;    /* as written after the operator name, leading space removed; "" when none */
    int op_negated;    /* "!@..." */
    char **transforms; /* t: names in order, as written (case kept), "none" included */
    size_t ntransforms;
    sl_action *actions; /* every action except t:, in order */
    size_t nactions;
    struct sl_rule *chain; /* the next link of a chain, or NULL */
    char *file;            /* where it was written, for messages */
    int line;
} sl_rule;

/* SecRuleUpdateTargetById / ByTag / ByMsg: targets added to (or, with '!', removed from) rules. */
typedef struct sl_target_update {
    int by;                /* 0 id, 1 tag, 2 msg */
    uint32_t id_lo, id_hi; /* by id: a single id has lo == hi (libmodsecurity 3.0.9 takes the leading
                            * number only, so it is always a single id; 0 matches no rule) */
    char *match;           /* by tag / msg: the text (a regex in libmodsecurity for tags; kept as written) */
    sl_var *vars;
    size_t nvars;
} sl_target_update;

/* SecRuleUpdateActionById: actions replacing or adding to a rule's actions. */
typedef struct sl_action_update {
    uint32_t id;
    sl_action *actions;
    size_t nactions;
    char **transforms;
    size_t ntransforms;
} sl_action_update;

typedef struct sl_ruleset {
    sl_rule **rules; /* heads of chains, SecActions and markers, in load order (all phases) */
    size_t nrules;
    /* SecDefaultAction per phase (index 1-5, 0 for phase:0; without phase: 1), without its phase
     * action. Given twice for a phase in one sl_add_* call (with what it includes) is an error; the
     * actions of later calls are appended, as libmodsecurity merges rule sets. */
    sl_action *default_actions[6];
    size_t ndefault_actions[6];
    char **default_transforms[6];
    size_t ndefault_transforms[6];
    /* SecRuleRemoveById (ranges "a-b" allowed), SecRuleRemoveByTag, SecRuleRemoveByMsg */
    uint32_t *remove_lo, *remove_hi;
    size_t nremove;
    char **remove_tags;
    size_t nremove_tags;
    char **remove_msgs;
    size_t nremove_msgs;
    sl_target_update *target_updates;
    size_t ntarget_updates;
    sl_action_update *action_updates;
    size_t naction_updates;
    /* Engine settings read where they change what rules see. As libmodsecurity: within one sl_add_*
     * call (with what it includes) the last value given counts; across calls the first call that set
     * one wins. -1 when never set. */
    int rule_engine;         /* 0 Off, 1 On, 2 DetectionOnly */
    int request_body_access; /* 0 Off, 1 On */
    char argument_separator; /* '&' by default */
    int argument_separator_set;
    /* Directives the reader skipped because it does not model them, as "file:line: Directive" */
    char **unsupported;
    size_t nunsupported;
} sl_ruleset;

sl_ruleset *sl_new(void);
void sl_free(sl_ruleset *rs);

/* Reads one file (and what it Includes), appending to rs. Returns 0, or -1 with "file:line: what"
 * in err for text that is not SecLang (libmodsecurity would refuse it too). */
int sl_add_file(sl_ruleset *rs, const char *path, char *err, size_t errlen);
/* The same for text given directly; `name` stands for the file in messages. */
int sl_add_text(sl_ruleset *rs, const char *text, const char *name, char *err, size_t errlen);

/* The action named `name` (lower-case) of r, the first one or NULL. */
const sl_action *sl_rule_action(const sl_rule *r, const char *name);

#endif
