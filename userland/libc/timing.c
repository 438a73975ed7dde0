/* Sleeps and lock timeouts on the virtual clock: nanosleep, clock_nanosleep, a timed mutex and condition. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static void *sleeper(void *arg) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    return arg;
}

int main(void) {
    long long start = now_ns(CLOCK_MONOTONIC);
    struct timespec ts = {0, 5000000};                 /* 5 ms */
    int result = nanosleep(&ts, NULL);
    printf("nanosleep 5ms: %d, slept enough: %s\n", result, now_ns(CLOCK_MONOTONIC) - start >= 5000000 ? "yes" : "no");

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += 3000000;
    if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
    result = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    printf("clock_nanosleep absolute: %d, reached: %s\n", result,
           now_ns(CLOCK_MONOTONIC) >= until.tv_sec * 1000000000LL + until.tv_nsec ? "yes" : "no");
    struct timespec bad = {0, 1000000000};
    result = nanosleep(&bad, NULL);
    printf("nanosleep with 1e9 ns: %d (%s)\n", result, strerror(errno));

    pthread_mutex_lock(&held);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
    result = pthread_mutex_timedlock(&held, &deadline);
    printf("timedlock on a held mutex: %s\n", strerror(result));
    pthread_mutex_lock(&m);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    result = pthread_cond_timedwait(&never, &m, &deadline);
    printf("cond_timedwait with no signal: %s\n", strerror(result));
    pthread_mutex_unlock(&m);
    pthread_join(t, NULL);
    printf("joined the sleeper\n");
    return 0;
}
