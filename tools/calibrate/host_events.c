/*
 * host_events.c: the host's Linux kernel doing the five things `make bench` times vmgames' kernel doing,
 * so that the bench prints each of ours beside the host's, measured in the same run (tools/bench.py
 * compiles this with gcc and runs it).
 *
 * usage: host_events PAGES REPEATS
 *     PAGES: the resident pages of the fork and exit measurements (16384: 64 MiB, as the bench's own);
 *     every figure is the best of REPEATS.
 *
 * Output, one line per figure on stdout: NAME NANOSECONDS
 *     zero_fill_fault_ns     a first write to a page of a fresh private anonymous mapping
 *     cow_fault_ns           a child's first write to a page its parent wrote before the fork
 *     fork_per_page_ns       fork(), per resident page of the parent (the time of a fork of PAGES pages, less
 *                            that of a fork of none, divided by PAGES)
 *     exit_per_page_ns       a process's exit and the wait that sees it, per resident page, measured the same way
 *     getpid_ns              a getpid() system call, there and back
 * The mappings are MADV_NOHUGEPAGE: on a host with transparent huge pages a first write could map 2 MiB at
 * once, and the bench compares 4 KiB faults.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define FAULT_PAGES 4096         /* pages written per zero-fill sample */
#define GETPID_CALLS 1000000

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static char *fresh(long pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("host_events: mmap");
		exit(1);
	}
	madvise(p, pages * PAGE, MADV_NOHUGEPAGE);
	return p;
}

static void touch(volatile char *p, long pages)
{
	for (long i = 0; i < pages; i++)
		p[i * PAGE] = 1;
}

static double zero_fill_fault(void)
{
	char *p = fresh(FAULT_PAGES);
	double start = now();

	touch(p, FAULT_PAGES);
	double spent = now() - start;
	munmap(p, FAULT_PAGES * PAGE);
	return spent / FAULT_PAGES;
}

/* The child writes every page and reports its time through a pipe. */
static double cow_fault(void)
{
	int pipefd[2];
	double spent = 0;
	char *p = fresh(FAULT_PAGES);

	touch(p, FAULT_PAGES);
	if (pipe(pipefd) != 0) {
		perror("host_events: pipe");
		exit(1);
	}
	pid_t child = fork();
	if (child == 0) {
		double start = now();

		touch(p, FAULT_PAGES);
		spent = (now() - start) / FAULT_PAGES;
		if (write(pipefd[1], &spent, sizeof spent) != sizeof spent)
			_exit(1);
		_exit(0);
	}
	if (read(pipefd[0], &spent, sizeof spent) != sizeof spent) {
		fprintf(stderr, "host_events: the child said nothing\n");
		exit(1);
	}
	waitpid(child, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);
	munmap(p, FAULT_PAGES * PAGE);
	return spent;
}

/* fork() with `pages` resident, and the exit of a child holding them (its own copies) until the wait. */
static void fork_and_exit(long pages, double *fork_ns, double *exit_ns)
{
	int ready[2], go[2];
	char *p = pages ? fresh(pages) : NULL;
	char byte = 0;

	touch(p, pages);
	if (pipe(ready) != 0 || pipe(go) != 0) {
		perror("host_events: pipe");
		exit(1);
	}
	double start = now();
	pid_t child = fork();
	if (child == 0) {
		touch(p, pages);        /* the child's own pages: its exit frees them */
		if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1)
			_exit(1);
		_exit(0);
	}
	*fork_ns = now() - start;
	if (read(ready[0], &byte, 1) != 1) {
		fprintf(stderr, "host_events: the child did not get ready\n");
		exit(1);
	}
	start = now();
	if (write(go[1], &byte, 1) != 1)
		exit(1);
	waitpid(child, NULL, 0);
	*exit_ns = now() - start;
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	if (p)
		munmap(p, pages * PAGE);
}

static double getpid_round_trip(void)
{
	double start = now();

	for (int i = 0; i < GETPID_CALLS; i++)
		syscall(SYS_getpid);
	return (now() - start) / GETPID_CALLS;
}

static double least(double a, double b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	long pages = argc == 3 ? atol(argv[1]) : 0;
	int repeats = argc == 3 ? atoi(argv[2]) : 0;
	double zero = 1e18, cow = 1e18, fork_big = 1e18, fork_none = 1e18, exit_big = 1e18, exit_none = 1e18,
	       syscall_ns = 1e18;

	if (pages < 1 || repeats < 1) {
		fprintf(stderr, "usage: host_events PAGES REPEATS (both at least 1)\n");
		return 2;
	}
	for (int i = 0; i < repeats; i++) {
		double f, e;

		zero = least(zero, zero_fill_fault());
		cow = least(cow, cow_fault());
		fork_and_exit(pages, &f, &e);
		fork_big = least(fork_big, f);
		exit_big = least(exit_big, e);
		fork_and_exit(0, &f, &e);
		fork_none = least(fork_none, f);
		exit_none = least(exit_none, e);
		syscall_ns = least(syscall_ns, getpid_round_trip());
	}
	printf("zero_fill_fault_ns %.1f\n", zero);
	printf("cow_fault_ns %.1f\n", cow);
	printf("fork_per_page_ns %.2f\n", (fork_big - fork_none) / pages);
	printf("exit_per_page_ns %.2f\n", (exit_big - exit_none) / pages);
	printf("getpid_ns %.1f\n", syscall_ns);
	return 0;
}
