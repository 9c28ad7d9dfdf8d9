/* Header lists: fields appended into arena blocks, looked up by name, dropped, freed at once. */
#include "headers.h"

#include <string.h>
#include <strings.h>

struct pc_hblock {
    pc_hblock *next;
    size_t used, cap;
    uint8_t data[];
};

/* Block and header together fit the worker's block cache. */
#define HBLOCK_SIZE (1024 - sizeof(pc_hblock))

int pc__headers_add(pc_headers *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        nghttp2_nv *nv = pc__mem_realloc(h->mem, h->nv, cap * sizeof *nv);
        if (!nv) return -1;
        h->nv = nv;
        h->cap = cap;
    }
    size_t need = nlen + vlen + 2;
    pc_hblock *b = h->blocks;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > HBLOCK_SIZE ? need : HBLOCK_SIZE;
        if (!(b = pc__mem_malloc(h->mem, sizeof *b + cap))) return -1;
        b->used = 0;
        b->cap = cap;
        b->next = h->blocks;
        h->blocks = b;
    }
    uint8_t *mem = b->data + b->used;
    b->used += need;
    memcpy(mem, name, nlen);
    mem[nlen] = '\0';
    memcpy(mem + nlen + 1, value, vlen);
    mem[nlen + 1 + vlen] = '\0';
    h->nv[h->n++] = (nghttp2_nv){mem, mem + nlen + 1, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    h->bytes += nlen + vlen + 32;
    return 0;
}

int pc__headers_add_str(pc_headers *h, const char *name, const char *value)
{
    return pc__headers_add(h, (const uint8_t *)name, strlen(name), (const uint8_t *)value, strlen(value));
}

const nghttp2_nv *pc__headers_find(const pc_headers *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        if (h->nv[i].namelen == n && strncasecmp((const char *)h->nv[i].name, name, n) == 0) return &h->nv[i];
    return NULL;
}

const char *pc__headers_get(const pc_headers *h, const char *name)
{
    const nghttp2_nv *nv = pc__headers_find(h, name);
    return nv ? (const char *)nv->value : NULL;
}

bool pc__headers_name_ok(const char *name)
{
    if (!name || !name[0] || name[0] == ':') return false;
    for (const char *c = name; *c; c++)
        if ((*c >= 'A' && *c <= 'Z') || *c <= 0x20 || *c >= 0x7f) return false;
    return true;
}

void pc__headers_remove(pc_headers *h, const char *name)
{
    size_t n = strlen(name), k = 0;
    for (size_t i = 0; i < h->n; i++) {
        nghttp2_nv *nv = &h->nv[i];
        if (nv->namelen == n && memcmp(nv->name, name, n) == 0) {
            h->bytes -= nv->namelen + nv->valuelen + 32;
            continue;
        }
        h->nv[k++] = *nv;
    }
    h->n = k;
}

void pc__headers_free(pc_headers *h)
{
    for (pc_hblock *b = h->blocks, *next; b; b = next) {
        next = b->next;
        pc__mem_free(h->mem, b);
    }
    pc__mem_free(h->mem, h->nv);
    *h = (pc_headers){.mem = h->mem};
}

pc_headers pc__headers_take(pc_headers *from)
{
    pc_headers h = *from;
    *from = (pc_headers){.mem = from->mem};
    return h;
}
