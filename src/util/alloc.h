/* alloc.h: counted memory, so that the residency budget is made of real numbers.
 *
 * Every allocation that belongs to a model version (weights, packed weights, plans, arenas,
 * tokenizer tables) is charged to that version's inferd_mem_account; everything else goes to
 * the process account (acct NULL). Blocks remember their account, so inferd_free needs only
 * the pointer. Blocks of INFERD_BIG_ALLOC bytes or more come straight from mmap with
 * transparent huge pages requested: page faults cost 10-20 us each on our machines, and a
 * 2 MiB page takes one fault instead of 512.
 *
 * Test builds can make the Nth allocation fail (inferd_alloc_fail_after), so every
 * out-of-memory path runs. All functions are safe from any thread.
 */
#ifndef INFERD_UTIL_ALLOC_H
#define INFERD_UTIL_ALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define INFERD_BIG_ALLOC ((size_t)1 << 20)

typedef struct inferd_mem_account {
    _Atomic int64_t bytes; /* currently allocated through this account */
    _Atomic int64_t peak;  /* highest value bytes has had */
} inferd_mem_account;

/* Zeroes the counters. The caller owns the struct; deinit needs no call. */
void inferd_mem_account_init(inferd_mem_account *acct);

/* Bytes currently allocated through acct (the process account when acct is NULL). */
int64_t inferd_mem_account_bytes(const inferd_mem_account *acct);

/* Adds delta bytes (negative to release) that the account holds without having allocated them
 * here, such as a memory-mapped file whose pages the model keeps resident. */
void inferd_mem_account_charge(inferd_mem_account *acct, int64_t delta);

/* Bytes allocated through all accounts together. */
int64_t inferd_mem_total_bytes(void);

/* Returns a block of n bytes aligned to 64, or NULL when out of memory (or when the
 * fault injector says so). n == 0 returns a valid unique block. */
void *inferd_malloc(inferd_mem_account *acct, size_t n);
/* As inferd_malloc, zero-filled; NULL also when count * size overflows. */
void *inferd_calloc(inferd_mem_account *acct, size_t count, size_t size);
/* Grows or shrinks p (NULL allocates) keeping its account (acct is used only when p is NULL).
 * On failure returns NULL and p stays valid. */
void *inferd_realloc(inferd_mem_account *acct, void *p, size_t n);
/* Frees a block from any of the above; NULL does nothing. */
void inferd_free(void *p);
/* strdup through an account. */
char *inferd_strdup(inferd_mem_account *acct, const char *s);
/* Usable size of a block, as requested. */
size_t inferd_alloc_size(const void *p);

/* Fault injection for tests: the nth allocation from now (1 = the next) and every later one
 * fail until inferd_alloc_fail_after(0) turns it off. */
void inferd_alloc_fail_after(long nth);
/* Number of allocations attempted since the process started (to size fault-injection loops). */
long inferd_alloc_count(void);
/* For allocators that carve memory out of blocks of their own (arenas): counts one allocation
 * attempt and returns nonzero when the fault injector fails it, so that tests reach their
 * callers' out-of-memory paths too, not only those of the calls that grow a block. */
int inferd_alloc_injected_failure(void);

#endif
