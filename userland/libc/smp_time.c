/*
 * Time across CPUs, as Linux promises it: readings of CLOCK_MONOTONIC (and the TSC) that a mutex orders never
 * go back, whichever CPU each thread reads them on, and clock_nanosleep(TIMER_ABSTIME) never returns before the
 * clock has reached the time asked for, though a thread on another CPU keeps the machine busy.  On vmgames
 * each CPU has a clock of its own (README, "Several CPUs"): this holds the kernel to both promises.
 * Prints the two counts of broken promises (0 and 0 on Linux) and exits 0 when both are 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long long last_ns;
static unsigned long long last_tsc;
static long went_back;
static volatile int done;

static long long now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *reader(void *unused)
{
    (void)unused;
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&lock);
        long long ns = now();
        unsigned long long tsc = __rdtsc();
        went_back += ns < last_ns || tsc < last_tsc;
        last_ns = ns;
        last_tsc = tsc;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *spinner(void *unused)
{
    (void)unused;
    while (!done)
        ;
    return NULL;
}

int main(void)
{
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, reader, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);

    pthread_t busy;
    pthread_create(&busy, NULL, spinner, NULL);
    int early = 0;
    for (int i = 0; i < 100; i++) {
        long long target = now() + 7000 + 113 * i;
        struct timespec until = {target / 1000000000LL, target % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
        early += now() < target;
    }
    done = 1;
    pthread_join(busy, NULL);
    printf("clock went back %ld times; absolute sleeps ended early %d times\n", went_back, early);
    return went_back || early;
}
