/*
 * calibrate.c: what a page copy, a fault, an mprotect and a TLB shootdown cost on this host.
 *
 * vmgames counts what its kernel does; tools/costmodel.py prices each count.  This program measures
 * the prices on the host's Linux, for `vmgames calibrate` (tools/cli/calibrate.py), which compiles it
 * with the host's gcc, runs it and writes a cost file.
 *
 * usage: calibrate SAMPLES
 *     Every figure is the median of SAMPLES timed samples (clock_gettime(CLOCK_MONOTONIC), its own
 *     cost measured and taken off); a sample of something shorter than the clock's resolution times a
 *     batch of repetitions and divides.
 *
 * Output, one line each, on stdout (flushed as it goes, so that the caller can show progress):
 *     stages N              how many "stage" lines follow
 *     stage NAME            a measurement begins
 *     figure NAME VALUE     a measured figure: nanoseconds for *_ns, else as the name says
 *     unavailable NAME WHY  a figure this host cannot give, and why
 * The names that are keys of tools/costmodel.py's Costs are its prices; the others explain them.
 * Exit status 1, with one line on stderr, only if the host refuses what every measurement needs.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define MIB (1024L * 1024)
#define BATCH 64                 /* repetitions per sample of a figure shorter than the clock's resolution */
#define FAULT_PAGES 256          /* pages per fresh mapping in the fault samples: the page-table page is shared */
#define COLD_BATCH 16            /* cold page copies per sample */
#define WINDOW_NS 10000000L      /* one window of the shootdown measurement: 10 ms */

static double timer_ns;          /* what reading the clock costs: taken off every single-shot sample */

/* Called through pointers the compiler cannot see through, so that no copy is inlined or elided. */
static void *(*volatile copy)(void *, const void *, size_t) = memcpy;
static void *(*volatile fill)(void *, int, size_t) = memset;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *samples, int n)
{
	qsort(samples, n, sizeof *samples, by_value);
	return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

static double *sample_array(int n)
{
	double *samples = malloc(n * sizeof *samples);

	if (samples == NULL) {
		fprintf(stderr, "calibrate: out of memory\n");
		exit(1);
	}
	return samples;
}

static void stage(const char *name)
{
	printf("stage %s\n", name);
	fflush(stdout);
}

static void figure(const char *name, double value)
{
	printf("figure %s %.4f\n", name, value);
	fflush(stdout);
}

static void unavailable(const char *name, const char *why)
{
	printf("unavailable %s %s\n", name, why);
	fflush(stdout);
}

/* A fresh private anonymous mapping, or NULL. */
static char *map_pages(long pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static long minor_faults(void)
{
	struct rusage usage;

	getrusage(RUSAGE_SELF, &usage);
	return usage.ru_minflt;
}

static void measure_timer(int samples)
{
	double *s = sample_array(samples);

	for (int i = 0; i < samples; i++) {
		double t0 = now();
		s[i] = now() - t0;
	}
	timer_ns = median(s, samples);
	figure("clock_gettime_ns", timer_ns);
	free(s);
}

/* A 4 KiB memcpy and memset, the page and its source in the cache (L1: 8 KiB of it); returns the memset's. */
static double measure_hot(int samples)
{
	char *src = map_pages(1), *dst = map_pages(1);
	double *copies = sample_array(samples), *zeroings = sample_array(samples);

	if (src == NULL || dst == NULL) {
		unavailable("copy_page_ns", "mmap failed");
		unavailable("zero_page_ns", "mmap failed");
		return 0;
	}
	fill(src, 1, PAGE);
	fill(dst, 2, PAGE);
	for (int i = 0; i < samples; i++) {
		double t0 = now();
		for (int j = 0; j < BATCH; j++)
			copy(dst, src, PAGE);
		double t1 = now();
		for (int j = 0; j < BATCH; j++)
			fill(dst, 0, PAGE);
		double t2 = now();
		copies[i] = (t1 - t0 - timer_ns) / BATCH;
		zeroings[i] = (t2 - t1 - timer_ns) / BATCH;
	}
	double zero_page = median(zeroings, samples);
	figure("copy_page_ns", median(copies, samples));
	figure("zero_page_ns", zero_page);
	munmap(src, PAGE);
	munmap(dst, PAGE);
	free(copies);
	free(zeroings);
	return zero_page;
}

/* The last-level cache's size, from sysfs (glibc's sysconf reads CPUID, which a hypervisor may garble). */
static long last_level_cache(void)
{
	long largest = 0;

	for (int index = 0; index < 8; index++) {
		char path[96];
		long size;
		char unit = 0;

		snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			break;
		if (fscanf(f, "%ld%c", &size, &unit) >= 1) {
			size *= unit == 'K' ? 1024 : unit == 'M' ? MIB : 1;
			largest = size > largest ? size : largest;
		}
		fclose(f);
	}
	return largest ? largest : 32 * MIB;
}

/*
 * A 4 KiB memcpy from DRAM to DRAM: pages of two buffers each four times the last-level cache, in a
 * shuffled order (no prefetcher guesses the next page).  First the pages of the second half of that
 * order are copied untimed, which pushes out of the cache what filling the buffers left there; then
 * pages of the first half are timed, each source page read once and each destination written once.  The buffers ask for huge pages, as the kernel's direct map has, so
 * that the figure is the copy, not TLB misses.
 */
static void measure_cold(int samples)
{
	long cache = last_level_cache(), size = 4 * cache;
	if (size < 64 * MIB)
		size = 64 * MIB;
	if (size > 1024 * MIB)
		size = 1024 * MIB;
	long pages = size / PAGE;
	char *src = map_pages(pages), *dst = map_pages(pages);
	long *order = malloc(pages * sizeof *order);

	if (src == NULL || dst == NULL || order == NULL) {
		unavailable("copy_page_cold_ns", "no memory for two buffers of four times the last-level cache");
		return;
	}
	madvise(src, size, MADV_HUGEPAGE);
	madvise(dst, size, MADV_HUGEPAGE);
	fill(src, 1, size);
	fill(dst, 2, size);
	unsigned long long state = 0x9e3779b97f4a7c15ULL;
	for (long i = 0; i < pages; i++)
		order[i] = i;
	for (long i = pages - 1; i > 0; i--) {
		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		long j = (state >> 33) % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (long i = pages / 2; i < pages; i++)
		copy(dst + order[i] * PAGE, src + order[i] * PAGE, PAGE);
	int n = samples < pages / 2 / COLD_BATCH ? samples : pages / 2 / COLD_BATCH;
	double *s = sample_array(n);
	for (int i = 0; i < n; i++) {
		double t0 = now();
		for (int j = 0; j < COLD_BATCH; j++) {
			long k = (long)i * COLD_BATCH + j;
			copy(dst + order[pages / 2 - 1 - k] * PAGE, src + order[k] * PAGE, PAGE);
		}
		s[i] = (now() - t0 - timer_ns) / COLD_BATCH;
	}
	figure("copy_page_cold_ns", median(s, n));
	figure("last_level_cache_mib", (double)cache / MIB);
	munmap(src, size);
	munmap(dst, size);
	free(order);
	free(s);
}

/*
 * A minor fault on fresh anonymous memory, one byte per page of a new mapping (huge pages refused, so
 * each page faults): a write allocates and zeroes a page, a read maps the shared zero page.  fault_ns is
 * the write fault less one page's zeroing (zero_page_ns), since the cost model prices the zeroing apart;
 * the page the kernel zeroes is a just-freed one, hot, as zero_page_ns's is.
 */
static void measure_faults(int samples, double zero_page)
{
	double *writes = sample_array(samples), *reads = sample_array(samples);
	long faults = 0;

	for (int i = 0; i < 2 * samples; i++) {
		char *p = map_pages(FAULT_PAGES);
		if (p == NULL) {
			unavailable("fault_ns", "mmap failed");
			return;
		}
		madvise(p, FAULT_PAGES * PAGE, MADV_NOHUGEPAGE);
		long before = minor_faults();
		double t0 = now();
		if (i % 2 == 0) {
			for (int j = 0; j < FAULT_PAGES; j++)
				p[j * PAGE] = 1;
		} else {
			for (int j = 0; j < FAULT_PAGES; j++)
				(void)*(volatile char *)&p[j * PAGE];
		}
		double t = (now() - t0 - timer_ns) / FAULT_PAGES;
		faults += minor_faults() - before;
		(i % 2 == 0 ? writes : reads)[i / 2] = t;
		munmap(p, FAULT_PAGES * PAGE);
	}
	double write_fault = median(writes, samples);
	figure("fault_zero_fill_ns", write_fault);
	figure("fault_read_zero_page_ns", median(reads, samples));
	figure("faults_per_page", (double)faults / (2.0 * samples * FAULT_PAGES));
	figure("fault_ns", write_fault - zero_page);
	free(writes);
	free(reads);
}

static void measure_syscall(int samples)
{
	double *s = sample_array(samples);

	for (int i = 0; i < samples; i++) {
		double t0 = now();
		for (int j = 0; j < BATCH; j++)
			syscall(SYS_getpid);
		s[i] = (now() - t0 - timer_ns) / BATCH;
	}
	figure("syscall_ns", median(s, samples));
	free(s);
}

/*
 * `pages` pages of their own mapping, read-write, written (present and dirty), with an inaccessible page
 * on either side so that no mprotect of them merges with or splits a neighbour's mapping.
 */
static char *protectable_pages(int pages)
{
	char *p = mmap(NULL, (pages + 2L) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	p += PAGE;
	if (mprotect(p, (long)pages * PAGE, PROT_READ | PROT_WRITE) != 0)
		return NULL;
	madvise(p, (long)pages * PAGE, MADV_NOHUGEPAGE);
	for (int i = 0; i < pages; i++)
		p[i * PAGE] = 1;
	return p;
}

static double timed_mprotect(char *p, int pages, int prot)
{
	double t0 = now();
	mprotect(p, (long)pages * PAGE, prot);
	return now() - t0 - timer_ns;
}

/* The round trip: mprotect a page read-only, then read-write again, then write it. */
static double round_trip(char *page)
{
	double t0 = now();
	mprotect(page, PAGE, PROT_READ);
	mprotect(page, PAGE, PROT_READ | PROT_WRITE);
	*(volatile char *)page = 2;
	return now() - t0 - timer_ns;
}

/* The least-squares line through (x[i], y[i]). */
static void fit_line(const double *x, const double *y, int n, double *slope, double *intercept)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0;

	for (int i = 0; i < n; i++) {
		sx += x[i];
		sy += y[i];
		sxx += x[i] * x[i];
		sxy += x[i] * y[i];
	}
	*slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
	*intercept = (sy - *slope * sx) / n;
}

/*
 * mprotect, and what a PTE write and a one-page invalidation cost, from one process alone on its CPU.
 *
 * An mprotect that takes a permission away (read to none here) rewrites each page's PTE and invalidates
 * the page's TLB entry: one invlpg per page up to Linux's tlb_single_page_flush_ceiling (33 pages), one
 * whole-TLB flush for a longer range.  Its time against the number of pages is two lines, each fitted
 * through the medians of several sizes:
 *     up to 33 pages: (PTE rewrite + invlpg) per page
 *     34 and more:     PTE rewrite per page, and one flush
 * pte_write_ns is the second line's slope (the PTE rewritten, with the page-table lock and the page
 * lookups around it, as Linux does it); invlpg_ns the first line's slope less the second's.  The full
 * flush's own cost is the jump between the lines (flush_jump_ns): a fraction of what a flush costs a
 * program, which pays most of it later, refilling its TLB entries as it touches its pages again, so it is
 * reported only, not taken for flush_all_ns.  Each page is on its own mapping between two inaccessible
 * pages, so no mprotect merges or splits a mapping; every page is present, so each is rewritten.
 */
static void measure_mprotect(int samples)
{
	enum { SIZES = 10, CEILING = 33 };
	const int sizes[SIZES] = { 1, 8, 16, 24, 32, 34, 48, 64, 96, 128 };
	double *times[SIZES], x[SIZES], y[SIZES], *trips = sample_array(samples);
	char *pages[SIZES];

	for (int k = 0; k < SIZES; k++) {
		pages[k] = protectable_pages(sizes[k]);
		if (pages[k] == NULL) {
			unavailable("pte_write_ns", "mmap or mprotect failed");
			unavailable("invlpg_ns", "mmap or mprotect failed");
			return;
		}
		times[k] = sample_array(samples);
	}
	for (int i = 0; i < samples; i++) {
		for (int k = 0; k < SIZES; k++) {
			times[k][i] = timed_mprotect(pages[k], sizes[k], PROT_NONE);
			mprotect(pages[k], (long)sizes[k] * PAGE, PROT_READ | PROT_WRITE);
		}
	}
	int below = 0;
	for (int k = 0; k < SIZES; k++) {
		x[k] = sizes[k];
		y[k] = median(times[k], samples);
		below += sizes[k] <= CEILING;
	}
	double per_page, invlpg_jump, per_page_flushed, flushed_jump;
	fit_line(x, y, below, &per_page, &invlpg_jump);
	fit_line(x + below, y + below, SIZES - below, &per_page_flushed, &flushed_jump);
	figure("mprotect_none_1_ns", y[0]);
	figure("mprotect_none_128_ns", y[SIZES - 1]);
	figure("pte_write_ns", per_page_flushed);
	figure("invlpg_ns", per_page - per_page_flushed);
	figure("flush_jump_ns", flushed_jump - invlpg_jump);

	long before = minor_faults();
	for (int i = 0; i < samples; i++)
		trips[i] = round_trip(pages[0]);
	figure("faults_per_round_trip", (double)(minor_faults() - before) / samples);
	figure("mprotect_round_trip_ns", median(trips, samples));
	for (int k = 0; k < SIZES; k++) {
		munmap(pages[k] - PAGE, (sizes[k] + 2L) * PAGE);
		free(times[k]);
	}
	free(trips);
}

/*
 * What the two threads of the shootdown measurement share; each field written by one thread, on a cache
 * line of its own.
 */
enum { PARK, SPIN, EXIT };
#define DESCHEDULED_NS 50000.0   /* a chunk of the target's loop this long was not running all along */
static struct {
	_Alignas(64) atomic_int phase;      /* what the target is to do: PARK, SPIN or EXIT (ours) */
	_Alignas(64) atomic_int parked;     /* the target is asleep: its CPU is idle or another process's */
	atomic_int pinned;                  /* 1 pinned, -1 could not be */
	atomic_long loops;                  /* the target's iterations while it ran undisturbed by the host... */
	_Atomic double running_ns;          /* ...and the time they took (theirs) */
	_Alignas(64) char *page;            /* the page both touch (set before the target starts) */
	int cpu;                            /* the target's CPU */
} shared;

/*
 * The target: pinned to its CPU, it reads the shared page and writes a page of its own, in chunks of 256
 * iterations, each timed.  A chunk much longer than the others is one in which the CPU ran something
 * else (another process, or the host another guest): dropped, so that the rate is the target's own while
 * it runs, and what it loses to shootdown interrupts shows against that.
 */
static void *target(void *unused)
{
	static char own[PAGE];
	cpu_set_t set;
	long loops = 0;
	double running = 0;

	(void)unused;
	CPU_ZERO(&set);
	CPU_SET(shared.cpu, &set);
	atomic_store(&shared.pinned, pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 1 : -1);
	for (;;) {
		int phase = atomic_load(&shared.phase);
		if (phase == EXIT)
			return NULL;
		if (phase == PARK) {
			atomic_store(&shared.parked, 1);
			while (atomic_load(&shared.phase) == PARK)
				nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
			atomic_store(&shared.parked, 0);
			continue;
		}
		double t0 = now();
		for (int i = 0; i < 256; i++)
			own[(i & 63) * 64] += *(volatile char *)&shared.page[2048 + (i & 31) * 64];
		double chunk = now() - t0;
		if (chunk < DESCHEDULED_NS) {
			loops += 256;
			running += chunk;
			atomic_store_explicit(&shared.running_ns, running, memory_order_relaxed);
			atomic_store_explicit(&shared.loops, loops, memory_order_release);
		}
	}
}

/* TLB shootdown interrupts `cpu` has taken: its column of /proc/interrupts' TLB line; -1 if none. */
static long tlb_interrupts(int cpu)
{
	FILE *f = fopen("/proc/interrupts", "r");
	char line[8192];
	long count = -1;
	int column = -1, n = 0;

	if (f == NULL)
		return -1;
	if (fgets(line, sizeof line, f) != NULL) {
		for (char *word = strtok(line, " \t\n"); word != NULL; word = strtok(NULL, " \t\n"), n++)
			if (strncmp(word, "CPU", 3) == 0 && atoi(word + 3) == cpu)
				column = n;
	}
	while (column >= 0 && fgets(line, sizeof line, f) != NULL) {
		char *word = strtok(line, " \t\n");
		if (word == NULL || strcmp(word, "TLB:") != 0)
			continue;
		for (n = 0; (word = strtok(NULL, " \t\n")) != NULL && n < column; n++)
			;
		if (word != NULL)
			count = atol(word);
		break;
	}
	fclose(f);
	return count;
}

/* The target's progress: iterations, and the time it ran them in. */
static void target_progress(long *loops, double *running)
{
	*loops = atomic_load_explicit(&shared.loops, memory_order_acquire);
	*running = atomic_load_explicit(&shared.running_ns, memory_order_relaxed);
}

static void set_phase(int phase)
{
	long loops, start;
	double running;

	atomic_store(&shared.phase, phase);
	if (phase == PARK) {
		while (!atomic_load(&shared.parked))
			sched_yield();
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);   /* its CPU goes idle */
		return;
	}
	target_progress(&start, &running);
	do {
		sched_yield();
		target_progress(&loops, &running);
	} while (loops == start);
}

#define PREEMPTED 20

/* The mean of the samples, those over PREEMPTED times the median left out (the sort is the median's). */
static double trimmed_mean(double *samples, int n)
{
	double limit = PREEMPTED * median(samples, n), sum = 0;
	int kept = 0;

	for (int i = 0; i < n; i++) {
		if (samples[i] < limit) {
			sum += samples[i];
			kept++;
		}
	}
	return kept ? sum / kept : limit / PREEMPTED;
}

static void no_shootdown(const char *why)
{
	unavailable("shootdown_wait_ns", why);
	unavailable("ipi_ns", why);
}

/*
 * A TLB shootdown, measured with two threads pinned to two CPUs.  The target (on the second CPU) loops
 * reading the shared page and writing one of its own; this thread (on the first) makes the round trip
 * on the shared page, whose mprotects must now invalidate the target CPU's TLB too: an IPI each, and a
 * wait for the target's answer.  In each of several windows:
 *   - the target parked (Linux sends no IPI to a CPU not running the address space): round trips alone;
 *   - the target spinning, this thread making null syscalls: the target's rate, undisturbed;
 *   - the target spinning, this thread making round trips: each timed, and the target's rate disturbed,
 *     and the shootdown interrupts its CPU took (/proc/interrupts' TLB line).
 * Only when the target is running does a shootdown interrupt it; on a busy host it is not always, so the
 * costs are per interrupt counted, not per round trip:
 *   shootdown_wait_ns = (sum of the round trips with the target - as many of the mean alone)
 *                       / shootdown interrupts
 *   ipi_ns = (the target's running time - its iterations at the undisturbed rate) / shootdown interrupts,
 * each summed over the windows.  Means, not medians, since most round trips may take no interrupt; a
 * round trip PREEMPTED times the median alone was preempted, and is left out of both.
 */
static void measure_shootdown(int samples)
{
	cpu_set_t allowed, first;
	int cpus[2], found = 0;
	pthread_t thread;

	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
		no_shootdown("sched_getaffinity failed");
		return;
	}
	for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
		if (CPU_ISSET(cpu, &allowed))
			cpus[found++] = cpu;
	if (found < 2) {
		no_shootdown("this process may run on one CPU only, and a shootdown takes two");
		return;
	}
	if (tlb_interrupts(cpus[1]) < 0) {
		no_shootdown("no count of TLB shootdown interrupts (no TLB line in /proc/interrupts)");
		return;
	}
	CPU_ZERO(&first);
	CPU_SET(cpus[0], &first);
	shared.page = protectable_pages(1);
	shared.cpu = cpus[1];
	atomic_store(&shared.phase, PARK);
	if (shared.page == NULL || sched_setaffinity(0, sizeof first, &first) != 0
	    || pthread_create(&thread, NULL, target, NULL) != 0) {
		no_shootdown("could not set up two threads on two CPUs");
		return;
	}
	while (atomic_load(&shared.pinned) == 0)
		sched_yield();
	if (atomic_load(&shared.pinned) < 0) {
		atomic_store(&shared.phase, EXIT);
		pthread_join(thread, NULL);
		no_shootdown("could not pin a thread to the second CPU");
		return;
	}

	int windows = samples / 50 < 3 ? 3 : samples / 50 > 20 ? 20 : samples / 50;
	int per_window = samples / windows < 20 ? 20 : samples / windows;
	double *alone = sample_array(per_window);
	double extra_wait = 0, lost = 0;
	long interrupts = 0, trips = 0;

	for (int w = 0; w < windows; w++) {
		set_phase(PARK);
		for (int i = 0; i < per_window; i++)
			alone[i] = round_trip(shared.page);
		double trip_alone = trimmed_mean(alone, per_window);

		long loops0, loops1;
		double running0, running1;
		set_phase(SPIN);
		target_progress(&loops0, &running0);
		double t0 = now();
		while (now() < t0 + WINDOW_NS)
			syscall(SYS_getpid);
		target_progress(&loops1, &running1);
		if (loops1 == loops0)
			continue;
		double rate = (loops1 - loops0) / (running1 - running0);

		long interrupts0 = tlb_interrupts(shared.cpu);
		target_progress(&loops0, &running0);
		t0 = now();
		while (now() < t0 + WINDOW_NS) {
			double trip = round_trip(shared.page);
			if (trip < PREEMPTED * trip_alone) {
				extra_wait += trip - trip_alone;
				trips++;
			}
		}
		target_progress(&loops1, &running1);
		interrupts += tlb_interrupts(shared.cpu) - interrupts0;
		lost += (running1 - running0) - (loops1 - loops0) / rate;
	}
	atomic_store(&shared.phase, EXIT);
	pthread_join(thread, NULL);
	munmap(shared.page - PAGE, 3 * PAGE);
	free(alone);

	figure("shootdown_cpu_first", cpus[0]);
	figure("shootdown_cpu_second", cpus[1]);
	figure("shootdown_interrupts_per_round_trip", trips ? (double)interrupts / trips : 0);
	if (interrupts <= 0) {
		no_shootdown("the second CPU took no shootdown interrupt (its thread never ran while the first "
			     "changed the page?)");
		return;
	}
	figure("shootdown_wait_ns", extra_wait / interrupts);
	figure("ipi_ns", lost / interrupts);
}

/*
 * The core's clock: a chain of dependent adds retires one add per cycle on every x86-64 core, whatever
 * its turbo or power state, so adds per nanosecond are cycles per nanosecond (the TSC's rate is a
 * nominal frequency, not the core's).
 */
static void measure_clock(int samples)
{
#if defined(__x86_64__)
	int n = samples / 20 < 5 ? 5 : samples / 20 > 51 ? 51 : samples / 20;
	double *s = sample_array(n);
	const long iterations = 1000000;          /* of 10 adds: 10 million cycles, a few milliseconds */

	for (int i = 0; i < n; i++) {
		long counter = iterations, value = 0;
		double t0 = now();
		__asm__ volatile("1:\n\t"
				 "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
				 "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
				 "dec %1\n\tjnz 1b"
				 : "+r"(value), "+r"(counter));
		s[i] = 10.0 * iterations / (now() - t0 - timer_ns);
	}
	figure("cpu_ghz", median(s, n));
	free(s);
#else
	(void)samples;
	unavailable("cpu_ghz", "the dependent-add clock measurement is written for x86-64 only");
#endif
}

int main(int argc, char **argv)
{
	int samples = argc == 2 ? atoi(argv[1]) : 0;

	if (samples < 1 || samples > 1000000) {
		fprintf(stderr, "usage: calibrate SAMPLES (1 to 1000000)\n");
		return 2;
	}
	printf("stages 7\n");
	stage("clock");
	measure_timer(samples * 10);
	measure_clock(samples);
	stage("hot copy and zeroing");
	double zero_page = measure_hot(samples);
	stage("cold copy");
	measure_cold(samples);
	stage("null syscall");
	measure_syscall(samples);
	stage("zero-fill faults");
	measure_faults(samples, zero_page);
	stage("mprotect");
	measure_mprotect(samples);
	stage("shootdown");
	measure_shootdown(samples);
	return 0;
}
