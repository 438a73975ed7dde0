/* Pipes between processes.
 *
 *   1. a child execs this program with "produce" and stdout dup2'ed onto a pipe;
 *      the parent reads everything up to EOF and prints it, prefixed
 *   2. a pipeline, producer | consumer: two children joined by a pipe, the
 *      consumer reading its stdin, summing numbers, printing the sum
 *   3. 200000 bytes (three times a pipe's capacity) through one pipe: the writer
 *      must block until the reader catches up; the reader checks every byte
 *   4. a write to a pipe nobody can read: the writer dies of SIGPIPE
 * The parent waits for each child before printing, so the order is fixed.
 * Exit status: the number of checks that failed. */
#include "runtime.h"

#define PRODUCED_LINES 3
#define BIG_TRANSFER 200000
#define SIGPIPE 13

static int failures;

static void produce(void)
{
    for (int i = 1; i <= PRODUCED_LINES; i++) {
        put("line ");
        put_number(i);
        put(" from the exec'd producer");
        end_line();
    }
}

/* Reads numbers, one per line, from stdin until EOF, and prints their sum. */
static int consume(void)
{
    char buffer[64];
    long sum = 0, number = 0, count;
    while ((count = read(0, buffer, sizeof buffer)) > 0) {
        for (long i = 0; i < count; i++) {
            if (buffer[i] == '\n') {
                sum += number;
                number = 0;
            } else {
                number = number * 10 + (buffer[i] - '0');
            }
        }
    }
    put("consumer: sum ");
    put_number(sum);
    put(", read returned ");
    put_number(count);
    put(" at the end");
    end_line();
    return 0;
}

static long must(long result, const char *what)
{
    if (result < 0) {
        put(what);
        put(" failed: ");
        put_number(result);
        end_line();
        exit(100);
    }
    return result;
}

static void child_status(const char *who, long child)
{
    int status = 0;
    must(wait4(child, &status, 0, 0), "wait4");
    put(who);
    put(": ");
    put_wait_status(status);
    end_line();
}

static void exec_into_a_pipe(char *self, char **envp)
{
    int fds[2];
    must(pipe(fds), "pipe");
    long child = must(fork(), "fork");
    if (child == 0) {
        must(dup2(fds[1], 1), "dup2");
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {self, "produce", 0};
        execve(self, argv, envp);
        exit(99);
    }
    close(fds[1]);   /* or the read below would never see EOF */
    char text[512];
    long used = 0, count;
    while ((count = read(fds[0], text + used, sizeof text - 1 - used)) > 0)
        used += count;
    close(fds[0]);
    text[used] = 0;
    child_status("producer", child);
    /* Print what came through, each line prefixed. */
    char *line = text;
    for (long i = 0; i < used; i++) {
        if (text[i] == '\n') {
            text[i] = 0;
            put("parent read: ");
            put(line);
            end_line();
            line = text + i + 1;
        }
    }
    put("parent read ");
    put_number(used);
    put(" bytes, then EOF (");
    put_number(count);
    put(")");
    end_line();
}

static void pipeline(void)
{
    int fds[2];
    must(pipe(fds), "pipe");
    long producer = must(fork(), "fork");
    if (producer == 0) {
        close(fds[0]);
        for (int i = 1; i <= 100; i++) {
            put_number(i);
            line_buffer[line_used++] = '\n';
            write(fds[1], line_buffer, line_used);
            line_used = 0;
        }
        exit(0);
    }
    long consumer = must(fork(), "fork");
    if (consumer == 0) {
        must(dup2(fds[0], 0), "dup2");
        close(fds[0]);
        close(fds[1]);
        exit(consume());
    }
    close(fds[0]);
    close(fds[1]);
    /* The consumer first: it prints, and only after it exits may the parent. */
    child_status("consumer", consumer);
    child_status("producer of 1..100", producer);
}

static unsigned char pattern(long i)
{
    return (unsigned char)(i * 7 + i / 251);
}

static void big_transfer(void)
{
    int fds[2];
    must(pipe(fds), "pipe");
    long writer = must(fork(), "fork");
    if (writer == 0) {
        close(fds[0]);
        static unsigned char block[BIG_TRANSFER];
        for (long i = 0; i < BIG_TRANSFER; i++)
            block[i] = pattern(i);
        long written = write(fds[1], block, BIG_TRANSFER);
        exit(written == BIG_TRANSFER ? 0 : 1);
    }
    close(fds[1]);
    unsigned char buffer[4096];
    long total = 0, mismatches = 0, count;
    while ((count = read(fds[0], buffer, sizeof buffer)) > 0) {
        for (long i = 0; i < count; i++)
            mismatches += buffer[i] != pattern(total + i);
        total += count;
    }
    close(fds[0]);
    child_status("writer of 200000 bytes", writer);
    put("reader got ");
    put_number(total);
    put(" bytes, ");
    put_number(mismatches);
    put(" wrong");
    end_line();
    failures += total != BIG_TRANSFER || mismatches != 0;
}

static void write_with_no_reader(void)
{
    int fds[2];
    must(pipe(fds), "pipe");
    close(fds[0]);
    long child = must(fork(), "fork");
    if (child == 0) {
        write(fds[1], "x", 1);
        exit(0);   /* survived: SIGPIPE was not sent */
    }
    close(fds[1]);
    int status = 0;
    must(wait4(child, &status, 0, 0), "wait4");
    put("writer to a pipe with no reader: ");
    put_wait_status(status);
    end_line();
    failures += !(WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE);
}

int main(int argc, char **argv, char **envp)
{
    if (argc >= 2 && strings_equal(argv[1], "produce")) {
        produce();
        return 0;
    }
    exec_into_a_pipe(argv[0], envp);
    pipeline();
    big_transfer();
    write_with_no_reader();
    return failures;
}
