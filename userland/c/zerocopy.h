/* What the zero-copy workloads share: their arguments, the pattern they send,
 * the sink, and the three ways of sending (issue 4).
 *
 *   PROGRAM MODE SIZE TOTAL [SINK [THREADS]]
 *     MODE   write     copy the bytes into the kernel
 *            cow       copy-on-write sends: ioctl(VMG_ZEROCOPY) on the sink, then write
 *            vmsplice  lend the pages (the receiver sees whatever they hold when it reads)
 *     SIZE   bytes per send (4k, 64k, 1m, ...)
 *     TOTAL  bytes to send in all, a multiple of SIZE
 *     SINK   wire (default): /dev/wire, a slow peer, vmgames only
 *            pipe: a pipe to a forked reader that checks every byte (runs on Linux too)
 *     THREADS  threads of the sending program (default 1): the others keep writing a page of their own
 *            until the sends are over, as a busy server's threads keep its address space in use on their
 *            CPUs; a copy-on-write send then has to shoot down the TLB of each CPU they run on
 *
 * Every send's bytes are a pattern of (send number, offset), so a buffer
 * refilled while its pages are still on their way shows up as bytes the
 * receiver got that differ from what was sent. */
#ifndef VMGAMES_ZEROCOPY_H
#define VMGAMES_ZEROCOPY_H

#include "runtime.h"

#define VMG_ZEROCOPY 0x7A01        /* ioctl: copy-on-write sends on this open file (vmgames only) */
#define SYS_zc_reap 1000           /* vmsplice completions (vmgames only) */
#define ZC_WAIT 1
#define MAX_SIZE (256L << 20)
#define MAX_THREADS 8
#define SYS_clone 56
#define SYS_futex 202
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129
#define CLONE_THREAD_FLAGS (0x100 | 0x200 | 0x400 | 0x800 | 0x10000)   /* VM, FS, FILES, SIGHAND, THREAD */

struct zc_range {
    unsigned int lo, hi;           /* vmsplice sequence numbers, inclusive */
};

enum mode { MODE_WRITE, MODE_COW, MODE_VMSPLICE };

struct workload {
    const char *name;
    enum mode mode;
    const char *mode_name;
    const char *sink_name;
    unsigned long size, total, sends;
    int fd;                        /* the sink's write end */
    long reader;                   /* the pipe reader's pid, or 0 for the wire */
    unsigned long sequence;        /* vmsplice calls that moved bytes so far: the next sequence number */
    unsigned long completed;       /* every sequence number below this one has completed */
    long threads;                  /* threads of the program: the sender and threads - 1 helpers */
};

/* The helpers: each keeps writing a page of its own until told to stop (or the program exits), so that its CPU
 * runs the address space all along, as a busy server's other threads do. */
static volatile int helpers_stop;
static int helpers_running;
static unsigned char helper_pages[MAX_THREADS][PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static unsigned char helper_stacks[MAX_THREADS][16384] __attribute__((aligned(16)));

static void helper(long index)
{
    __atomic_add_fetch(&helpers_running, 1, __ATOMIC_SEQ_CST);
    syscall6(SYS_futex, (long)&helpers_running, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    while (!helpers_stop)
        helper_pages[index][0]++;
}

/* clone a thread that runs fn(arg) on `stack_top` and then exits: the child returns from the syscall on its
 * new stack, so it must not return into this function. */
static long start_thread(void (*fn)(long), long arg, void *stack_top)
{
    long result;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    register long r12 __asm__("r12") = (long)fn;
    register long r13 __asm__("r13") = arg;
    __asm__ volatile("syscall\n"
                     "    test rax, rax\n"
                     "    jnz 1f\n"
                     "    mov rdi, r13\n"
                     "    call r12\n"
                     "    mov eax, 60\n"
                     "    xor edi, edi\n"
                     "    syscall\n"
                     "1:\n"
                     : "=a"(result)
                     : "a"(SYS_clone), "D"(CLONE_THREAD_FLAGS), "S"(stack_top), "d"(0), "r"(r10), "r"(r8),
                       "r"(r12), "r"(r13)
                     : "rcx", "r11", "memory");
    return result;
}

static inline long zc_reap(int fd, struct zc_range *out, unsigned int max, unsigned int flags)
{
    return syscall6(SYS_zc_reap, fd, (long)out, max, flags, 0, 0);
}

static void __attribute__((noreturn)) fail(struct workload *w, const char *what, long result)
{
    put(w->name);
    put(": ");
    put(what);
    put(" failed: ");
    put_number(result);
    end_line();
    exit(1);
}

static void __attribute__((noreturn)) usage(const char *name, const char *problem)
{
    put(name);
    put(": ");
    put(problem);
    end_line();
    put("usage: ");
    put(name);
    put(" write|cow|vmsplice SIZE TOTAL [wire|pipe [THREADS]]   (sizes like 4096, 64k, 1m; 1-8 threads)");
    end_line();
    exit(2);
}

/* "64k" -> 65536; 0 for anything that is not a size. */
static unsigned long parse_size(const char *text)
{
    unsigned long n = 0;
    const char *p = text;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        n = n * 10 + (unsigned long)(*p++ - '0');
        if (n > MAX_SIZE)
            return 0;
    }
    if (*p == 'k' || *p == 'K')
        n <<= 10, p++;
    else if (*p == 'm' || *p == 'M')
        n <<= 20, p++;
    return *p ? 0 : n;
}

/* Word `index` of send number `send`: different for every send at every offset. */
static inline unsigned long pattern_word(unsigned long send, unsigned long index)
{
    return (send + 1) * 0x9E3779B97F4A7C15UL + index * 0xD1B54A32D192ED03UL;
}

static inline unsigned char pattern_byte(unsigned long send, unsigned long offset)
{
    return (unsigned char)(pattern_word(send, offset / 8) >> (8 * (offset % 8)));
}

/* Fill a buffer with what send number `send` carries. */
static void fill(struct workload *w, unsigned char *buffer, unsigned long send)
{
    unsigned long words = w->size / 8;
    for (unsigned long i = 0; i < words; i++)
        ((unsigned long *)buffer)[i] = pattern_word(send, i);
    for (unsigned long i = words * 8; i < w->size; i++)
        buffer[i] = pattern_byte(send, i);
}

static unsigned char *map_buffer(struct workload *w, unsigned long length)
{
    long address = mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address < 0)
        fail(w, "mmap", address);
    return (unsigned char *)address;
}

/* The pipe's reader: reads to EOF and counts the bytes that are not what the sender meant to send. */
static void __attribute__((noreturn)) read_and_check(struct workload *w, int fd)
{
    static unsigned char chunk[65536];
    unsigned long received = 0, wrong = 0, send = 0, offset = 0;
    long count;
    while ((count = read(fd, chunk, sizeof chunk)) > 0) {
        for (long i = 0; i < count; i++) {
            wrong += chunk[i] != pattern_byte(send, offset);
            if (++offset == w->size)
                offset = 0, send++;
        }
        received += (unsigned long)count;
    }
    put("reader: ");
    put_number((long)received);
    put(" bytes, ");
    put_number((long)wrong);
    put(" differ from what was sent");
    end_line();
    exit(count < 0 ? 1 : 0);
}

/* Parse the arguments and open the sink (forking the pipe's reader). */
static void start(struct workload *w, int argc, char **argv)
{
    w->name = argv[0];
    if (argc < 4 || argc > 6)
        usage(w->name, "expected MODE SIZE TOTAL [SINK [THREADS]]");
    w->mode_name = argv[1];
    if (strings_equal(argv[1], "write"))
        w->mode = MODE_WRITE;
    else if (strings_equal(argv[1], "cow"))
        w->mode = MODE_COW;
    else if (strings_equal(argv[1], "vmsplice"))
        w->mode = MODE_VMSPLICE;
    else
        usage(w->name, "MODE must be write, cow or vmsplice");
    w->size = parse_size(argv[2]);
    w->total = parse_size(argv[3]);
    if (w->size == 0 || w->total == 0)
        usage(w->name, "SIZE and TOTAL must be sizes from 1 byte to 256m");
    if (w->total % w->size)
        usage(w->name, "TOTAL must be a multiple of SIZE");
    w->sends = w->total / w->size;
    w->sink_name = argc >= 5 ? argv[4] : "wire";
    w->threads = argc == 6 ? (long)parse_size(argv[5]) : 1;
    if (w->threads < 1 || w->threads > MAX_THREADS)
        usage(w->name, "THREADS must be 1 to 8");
    if (strings_equal(w->sink_name, "wire")) {
        long fd = open("/dev/wire", O_WRONLY, 0);
        if (fd < 0)
            fail(w, "open /dev/wire (it exists on vmgames only; use the pipe sink elsewhere)", fd);
        w->fd = (int)fd;
    } else if (strings_equal(w->sink_name, "pipe")) {
        int fds[2];
        long result = pipe(fds);
        if (result < 0)
            fail(w, "pipe", result);
        w->reader = fork();
        if (w->reader < 0)
            fail(w, "fork", w->reader);
        if (w->reader == 0) {
            close(fds[1]);
            read_and_check(w, fds[0]);
        }
        close(fds[0]);
        w->fd = fds[1];
    } else {
        usage(w->name, "SINK must be wire or pipe");
    }
    if (w->mode == MODE_COW) {
        long result = ioctl(w->fd, VMG_ZEROCOPY, 1);
        if (result < 0)
            fail(w, "ioctl(VMG_ZEROCOPY) (copy-on-write sends exist on vmgames only)", result);
    }
    for (long i = 1; i < w->threads; i++) {
        long result = start_thread(helper, i, helper_stacks[i] + sizeof helper_stacks[i]);
        if (result < 0)
            fail(w, "clone", result);
    }
    /* Wait until every helper runs (on a CPU of its own, where there are enough): a futex, so that the wait
     * costs a syscall or two whatever the scheduler does meanwhile. */
    for (int seen; (seen = __atomic_load_n(&helpers_running, __ATOMIC_SEQ_CST)) < w->threads - 1;)
        syscall6(SYS_futex, (long)&helpers_running, FUTEX_WAIT_PRIVATE, seen, 0, 0, 0);
}



/* Send one buffer in the workload's mode; blocks while the sink is full. */
static void send(struct workload *w, const unsigned char *buffer, unsigned long length)
{
    while (length) {
        long sent;
        if (w->mode == MODE_VMSPLICE) {
            struct iovec iov = {(void *)buffer, length};
            sent = vmsplice(w->fd, &iov, 1, 0);
            if (sent > 0)
                w->sequence++;
        } else {
            sent = write(w->fd, buffer, length);
        }
        if (sent <= 0)
            fail(w, w->mode == MODE_VMSPLICE ? "vmsplice" : "write", sent);
        buffer += sent;
        length -= (unsigned long)sent;
    }
}

/* Wait until every vmsplice call before sequence number `upto` has completed.
 * A wire and a pipe drain in order, so completions come oldest first. */
static inline void wait_for_completions(struct workload *w, unsigned long upto)
{
    struct zc_range ranges[16];
    while (w->completed < upto) {
        long count = zc_reap(w->fd, ranges, 16, ZC_WAIT);
        if (count <= 0)
            fail(w, "zc_reap", count);
        for (long i = 0; i < count; i++) {
            if (ranges[i].lo != (unsigned int)w->completed)
                fail(w, "zc_reap (a completion out of order)", ranges[i].lo);
            w->completed = (unsigned long)ranges[i].hi + 1;
        }
    }
}

/* Say what was sent, close the sink and wait for the pipe's reader; returns the exit status. */
static int finish(struct workload *w)
{
    put(w->name);
    put(": ");
    put_number((long)w->sends);
    put(" sends of ");
    put_number((long)w->size);
    put(" bytes by ");
    put(w->mode_name);
    put(" to the ");
    put(w->sink_name);
    end_line();
    helpers_stop = 1;              /* and the exit that follows ends them, wherever they are */
    close(w->fd);
    if (w->reader) {
        int status = 0;
        long result = wait4(w->reader, &status, 0, 0);
        if (result < 0)
            fail(w, "wait4", result);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    return 0;
}

#endif
