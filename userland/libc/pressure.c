/*
 * pressure PAGES HOT_PERCENT ROUNDS [SEED [READERS]]: a working set larger than RAM, part of it hot.
 *
 * Maps PAGES pages of anonymous memory and writes each once.  Then, ROUNDS times over: every hot page
 * (the first HOT_PERCENT percent of them) is written again, and as many cold pages, drawn at random
 * (from SEED, default 1).  Each write leaves the page's index at its start and its end, and the number
 * of times it was written beside them.  At the end every page is checked against what was written:
 * whatever went to swap and came back, or was dropped and read back, must hold the same bytes.
 * Prints what it did and "ok", or the first page that came back wrong (exit status 1).
 *
 * READERS threads (default 0) read the hot pages over and over meanwhile, so that with several CPUs
 * the address space is loaded on more than one: an accessed bit the pageout daemon clears is then a
 * TLB shootdown too.
 *
 *   vmgames run --ram 8M --swap 64M --stats build/pressure 4096 10 20
 *   vmgames experiment pressure        (the pageout daemon's queues and aging against a plain FIFO)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define PAGE 4096
#define WORDS (PAGE / sizeof(uint64_t))

static uint64_t state;
static uint8_t *area;
static long hot;
static atomic_int done;

static void *read_hot_pages(void *unused)
{
    volatile uint64_t sum = 0;
    (void)unused;
    while (!atomic_load(&done))
        for (long i = 0; i < hot && !atomic_load(&done); i++)
            sum += *(volatile uint64_t *)(area + i * PAGE);
    return NULL;
}

static uint64_t next_random(void)      /* xorshift64: the same draws on every machine */
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void write_page(uint64_t *page, uint64_t index, uint32_t *writes)
{
    writes[index]++;
    page[0] = index;
    page[1] = writes[index];
    page[WORDS - 2] = writes[index];
    page[WORDS - 1] = index;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: pressure PAGES HOT_PERCENT ROUNDS [SEED [READERS]]\n");
        return 2;
    }
    long pages = atol(argv[1]), hot_percent = atol(argv[2]), rounds = atol(argv[3]);
    state = argc >= 5 ? strtoull(argv[4], NULL, 10) : 1;
    long readers = argc == 6 ? atol(argv[5]) : 0;
    if (pages < 1 || hot_percent < 0 || hot_percent > 100 || rounds < 0 || state == 0 || readers < 0
            || readers > 8) {
        fprintf(stderr, "pressure: PAGES >= 1, HOT_PERCENT 0 to 100, ROUNDS >= 0, SEED >= 1, READERS 0 to 8\n");
        return 2;
    }
    hot = pages * hot_percent / 100;
    long cold = pages - hot;
    area = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint32_t *writes = calloc(pages, sizeof *writes);
    if (area == MAP_FAILED || writes == NULL) {
        perror("pressure");
        return 2;
    }
    for (long i = 0; i < pages; i++)
        write_page((uint64_t *)(area + i * PAGE), i, writes);
    pthread_t threads[8];
    for (long i = 0; i < readers; i++)
        pthread_create(&threads[i], NULL, read_hot_pages, NULL);
    long total = pages;
    for (long round = 0; round < rounds; round++) {
        for (long i = 0; i < hot; i++)
            write_page((uint64_t *)(area + i * PAGE), i, writes);
        for (long i = 0; i < hot && cold > 0; i++) {
            long index = hot + (long)(next_random() % (uint64_t)cold);
            write_page((uint64_t *)(area + index * PAGE), index, writes);
        }
        total += hot + (cold > 0 ? hot : 0);
    }
    atomic_store(&done, 1);
    for (long i = 0; i < readers; i++)
        pthread_join(threads[i], NULL);
    for (long i = 0; i < pages; i++) {
        uint64_t *page = (uint64_t *)(area + i * PAGE);
        if (page[0] != (uint64_t)i || page[WORDS - 1] != (uint64_t)i || page[1] != writes[i]
                || page[WORDS - 2] != writes[i]) {
            printf("pressure: page %ld came back wrong: index %lu/%lu, writes %lu/%lu, expected %ld and %u\n",
                   i, page[0], page[WORDS - 1], page[1], page[WORDS - 2], i, writes[i]);
            return 1;
        }
    }
    printf("pressure: %ld pages (%ld hot), %ld rounds, %ld page writes: ok\n", pages, hot, rounds, total);
    return 0;
}
