#include "util/alloc.h"
#include "util/error.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Each block starts with this header; the caller's pointer is 64 bytes after the start of the
 * header's cache line, so data stays 64-byte aligned for AVX-512 loads. */
typedef struct block_header {
    size_t size;              /* bytes the caller asked for */
    size_t mapped;            /* bytes mmapped (big blocks), 0 for malloc blocks */
    inferd_mem_account *acct; /* charged account, NULL for the process account */
    uint64_t magic;
    char pad[64 - 4 * sizeof(size_t)];
} block_header;

#define HDR sizeof(block_header)
#define MAGIC 0x696e66657264ULL

static inferd_mem_account process_account;
static _Atomic int64_t total_bytes;
static _Atomic long alloc_count;
static _Atomic long fail_at; /* alloc_count value at which failures start; 0 = never */

void inferd_mem_account_init(inferd_mem_account *acct) {
    atomic_store(&acct->bytes, 0);
    atomic_store(&acct->peak, 0);
}

int64_t inferd_mem_account_bytes(const inferd_mem_account *acct) {
    return atomic_load(&(acct ? acct : &process_account)->bytes);
}

int64_t inferd_mem_total_bytes(void) { return atomic_load(&total_bytes); }

void inferd_alloc_fail_after(long nth) {
    atomic_store(&fail_at, nth > 0 ? atomic_load(&alloc_count) + nth : 0);
}

long inferd_alloc_count(void) { return atomic_load(&alloc_count); }

static int should_fail(void) {
    long n = atomic_fetch_add(&alloc_count, 1) + 1;
    long f = atomic_load(&fail_at);
    return f > 0 && n >= f;
}

int inferd_alloc_injected_failure(void) { return should_fail(); }

static void charge(inferd_mem_account *acct, int64_t delta) {
    inferd_mem_account *a = acct ? acct : &process_account;
    int64_t now = atomic_fetch_add(&a->bytes, delta) + delta;
    int64_t peak = atomic_load(&a->peak);
    while (now > peak && !atomic_compare_exchange_weak(&a->peak, &peak, now)) {
    }
    atomic_fetch_add(&total_bytes, delta);
}

static block_header *header_of(const void *p) { return (block_header *)((char *)p - HDR); }

void inferd_mem_account_charge(inferd_mem_account *acct, int64_t delta) { charge(acct, delta); }

void *inferd_malloc(inferd_mem_account *acct, size_t n) {
    if (should_fail() || n > SIZE_MAX / 2)
        return NULL;
    block_header *h;
    size_t mapped = 0;
    if (n >= INFERD_BIG_ALLOC) {
        size_t huge = (size_t)2 << 20;
        mapped = (n + HDR + huge - 1) / huge * huge;
        void *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        madvise(m, mapped, MADV_HUGEPAGE);
        h = m;
    } else {
        h = aligned_alloc(64, (n + HDR + 63) / 64 * 64);
        if (!h)
            return NULL;
    }
    h->size = n;
    h->mapped = mapped;
    h->acct = acct;
    h->magic = MAGIC;
    charge(acct, (int64_t)n);
    return (char *)h + HDR;
}

void *inferd_calloc(inferd_mem_account *acct, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size)
        return NULL;
    size_t n = count * size;
    void *p = inferd_malloc(acct, n);
    // Fresh mmap blocks are already zero; touching them would fault every page in.
    if (p && !header_of(p)->mapped)
        memset(p, 0, n);
    return p;
}

void inferd_free(void *p) {
    if (!p)
        return;
    block_header *h = header_of(p);
    if (INFERD_NEVER(h->magic != MAGIC))
        return;
    charge(h->acct, -(int64_t)h->size);
    h->magic = 0;
    if (h->mapped)
        munmap(h, h->mapped);
    else
        free(h);
}

void *inferd_realloc(inferd_mem_account *acct, void *p, size_t n) {
    if (!p)
        return inferd_malloc(acct, n);
    block_header *h = header_of(p);
    void *q = inferd_malloc(h->acct, n);
    if (!q)
        return NULL;
    memcpy(q, p, h->size < n ? h->size : n);
    inferd_free(p);
    return q;
}

char *inferd_strdup(inferd_mem_account *acct, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = inferd_malloc(acct, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

size_t inferd_alloc_size(const void *p) { return p ? header_of(p)->size : 0; }
