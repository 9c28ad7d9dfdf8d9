/* libFuzzer target for the Lua request bridge: hostile requests (host, path, method, headers, published
 * values, message bytes) go through the lua plugin, loaded by the core as in production, with rules that
 * read every field, match patterns with captures, decode messages and act with values taken from the
 * request. Built as every fuzz target (linking pc_core only): the plugin is dlopened from the build tree
 * (../plugins/pc-lua.so next to this binary's directory, or $PC_LUA_PLUGIN).
 *
 * Input: flags byte, then NUL-separated fields: host label, path, method, header name, value, ...,
 * an empty field, then the rest is the request messages, separated by the two bytes "\0\1". */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rules_test.h"

static const char rules[] =
    "local function s(v) return tostring(v) end\n"
    "function bot_score(req, score)\n"
    "  local x = req.headers['x-score']\n"
    "  if x then return tonumber(x) end\n"
    "  return score\n"
    "end\n"
    "return {\n"
    "  { name = 'fields', match = '*',\n"
    "    on_request = function(req)\n"
    "      local t = {}\n"
    "      for k, v in pairs(req.headers) do t[#t + 1] = k .. '=' .. v end\n"
    "      t[#t + 1] = s(req.host) .. s(req.path) .. s(req.method) .. s(req.authority) .. s(req.scheme)\n"
    "      t[#t + 1] = s(req.zone) .. s(req.origin) .. s(req.request_id) .. s(req.is_grpc)\n"
    "      t[#t + 1] = s(req.grpc.service) .. s(req.grpc.method) .. s(req.grpc.subtype)\n"
    "      t[#t + 1] = s(req.client.ip) .. s(req.client.port) .. s(req.tls.sni) .. s(req.tls.ja4)\n"
    "      t[#t + 1] = s(req.tls.version) .. s(req.h2.fingerprint) .. s(req.bot.score) .. s(req.bot.class)\n"
    "      t[#t + 1] = s(req.values['x']) .. s(req:lookup('bot.score'))\n"
    "      req:publish('fz.fields', table.concat(t, ';'):sub(1, 200))\n"
    "      local n, v = req.headers['x-n'], req.headers['x-v']\n"
    "      if n and v then\n"
    "        req:set_header(n, v); req:set_response_header(n, v); req:remove_header(n)\n"
    "      end\n"
    "      if req.headers['x-route'] then req:route(req.headers['x-route']) end\n"
    "      if req.headers['x-skip'] then req:skip(req.headers['x-skip']) end\n"
    "      if req.headers['x-log'] then req:log(req.headers['x-log']) end\n"
    "      local st = req.headers['x-status']\n"
    "      if st and pcall(req.deny, req, tonumber(st) or st, req.headers['x-msg']) then return end\n"
    "      if req.headers['x-error'] then error(req.headers['x-error']) end\n"
    "    end },\n"
    "  { name = 'captures', match = { '*.*.fz.test/*/*', '*/*.*/*', '*/*?*=*' },\n"
    "    on_request = function(req) req:publish('fz.caps', table.concat(req.captures, '|')) end },\n"
    "  { name = 'message', match = '*',\n"
    "    on_message = function(req, msg)\n"
    "      local n = 0\n"
    "      for k, v in pairs(msg.fields) do n = n + #k + #tostring(v) end\n"
    "      for _, l in pairs(msg.all) do n = n + #l end\n"
    "      local j = msg.json\n"
    "      if msg.error then n = n + 1 end\n"
    "      req:publish('fz.msg', s(n) .. s(j and #j) .. msg.index .. msg.size)\n"
    "      if msg.fields['1'] == 'deny' then return req:deny('PERMISSION_DENIED', 'by field') end\n"
    "    end },\n"
    "}\n";

static pc_rules_env *env;
static char tmpdir[] = "/tmp/pc-fuzz-lua-XXXXXX";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "fuzz_lua: cannot write %s\n", path);
        abort();
    }
}

static void cleanup(void)
{
    char path[sizeof tmpdir + 64];
    pc__rules_env_close(env);
    env = NULL;
    static const char *const files[] = {"rules/10-fuzz.lua", "rules", "portcullis.yaml", ""};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        remove(path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char plugin[PATH_MAX] = "";
    const char *from_env = getenv("PC_LUA_PLUGIN");
    if (from_env) {
        snprintf(plugin, sizeof plugin, "%s", from_env);
    } else {
        /* build/tests/fuzz_lua -> build/plugins/pc-lua.so */
        ssize_t n = readlink("/proc/self/exe", plugin, sizeof plugin - 64);
        plugin[n > 0 ? n : 0] = '\0';
        for (int i = 0; i < 2; i++) {
            char *slash = strrchr(plugin, '/');
            if (slash) *slash = '\0';
        }
        strcat(plugin, "/plugins/pc-lua.so");
    }
    if (!mkdtemp(tmpdir)) abort();
    char path[sizeof tmpdir + 64], conf[PATH_MAX + 1024];
    snprintf(path, sizeof path, "%s/rules", tmpdir);
    if (mkdir(path, 0700) != 0) abort();
    snprintf(path, sizeof path, "%s/rules/10-fuzz.lua", tmpdir);
    write_file(path, rules);
    snprintf(conf, sizeof conf,
             "listen: [{address: \"127.0.0.1:9\"}]\n"
             "origins: [{name: o, servers: [\"127.0.0.1:9\"]}, {name: p, servers: [\"127.0.0.1:9\"]}]\n"
             "zones: [{name: fz, hosts: [\"*.fz.test\", \"fz.test\"], origin: o}]\n"
             "log: {access: \"off\", level: error}\n"
             "plugins:\n"
             "  - path: \"%s\"\n"
             "    config: {dir: rules, max_instructions: 20000, max_memory: 4194304}\n",
             plugin);
    snprintf(path, sizeof path, "%s/portcullis.yaml", tmpdir);
    write_file(path, conf);
    char err[2048];
    if (!(env = pc__rules_env_open(path, err, sizeof err))) {
        fprintf(stderr, "fuzz_lua: %s\n", err);
        cleanup();
        abort();
    }
    atexit(cleanup);
    return 0;
}

#define MAX_FIELDS 64
#define MAX_MSGS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return 0;
    uint8_t flags = data[0];
    /* A NUL-terminated copy: the fields are then C strings in place. */
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    size_t len = size - 1, pos = 0, nf = 0;
    const char *f[MAX_FIELDS];
    while (pos < len && nf < MAX_FIELDS) {
        size_t n = strlen(buf + pos);
        if (n == 0) {
            pos++;
            break;
        }
        f[nf++] = buf + pos;
        pos += n + 1;
    }
    pc_rules_msg msgs[MAX_MSGS];
    size_t nmsgs = 0;
    while (pos < len && nmsgs < MAX_MSGS) {
        const char *end = NULL;
        for (size_t i = pos; i + 1 < len; i++)
            if (buf[i] == '\0' && buf[i + 1] == '\1') {
                end = buf + i;
                break;
            }
        size_t n = end ? (size_t)(end - (buf + pos)) : len - pos;
        msgs[nmsgs++] = (pc_rules_msg){(const uint8_t *)buf + pos, n};
        pos += n + 2;
    }
    char host[300];
    snprintf(host, sizeof host, "%s.fz.test", nf > 0 ? f[0] : "a");
    size_t nh = nf > 3 ? (nf - 3) / 2 : 0;
    pc_rules_request rq = {
        .host = host,
        .path = nf > 1 ? f[1] : "/fz.Svc/Call",
        .method = nf > 2 ? f[2] : NULL,
        .grpc = !(flags & 1),
        .cleartext = flags & 2,
        .headers = nh ? f + 3 : NULL,
        .nheaders = nh,
        .client_port = flags,
        .messages = msgs,
        .nmessages = nmsgs,
    };
    /* Some headers also stand for values earlier plugins published (the bot score among them). */
    const char *published[] = {"bot.score", nh ? f[4] : "50", "x", nf > 1 ? f[1] : "v"};
    rq.published = published;
    rq.npublished = flags & 4 ? 2 : 0;
    pc_rules_result res;
    char err[512];
    if (pc__rules_env_run(env, &rq, &res, err, sizeof err) == 0 || res.req) pc__rules_result_free(env, &res);
    free(buf);
    return 0;
}
