/* exec of the program itself, by argv[0] exactly as it was given, with new arguments.
 *
 *   exec_self               forks a child that execs "argv[0] child one two" (exit 42),
 *                           tries a path that does not exist (execve returns -ENOENT and
 *                           the caller carries on), then execs "argv[0] last" itself
 *   exec_self child ...     prints its arguments and that its data is the file's again
 *   exec_self last          prints that it replaced the first image, exits 7
 *
 * Each image increments a data variable before exec; the new image must see the
 * value from the file (1), not the old image's. */
#include "runtime.h"

static long generation = 1;

static void print_arguments(const char *who, int argc, char **argv)
{
    put(who);
    put(": argc ");
    put_number(argc);
    for (int i = 1; i < argc; i++) {
        put(" [");
        put(argv[i]);
        put("]");
    }
    put(", data from the file: ");
    put_number(generation);
    end_line();
}

int main(int argc, char **argv, char **envp)
{
    if (argc >= 2 && strings_equal(argv[1], "child")) {
        print_arguments("exec'd child", argc, argv);
        return 42;
    }
    if (argc >= 2 && strings_equal(argv[1], "last")) {
        print_arguments("exec'd over the first image", argc, argv);
        return generation == 1 ? 7 : 8;
    }

    print_arguments("first image", argc, argv);
    generation = 2;
    long child = fork();
    if (child < 0)
        return 100;
    if (child == 0) {
        char *child_argv[] = {argv[0], "child", "one", "two", 0};
        long error = execve(argv[0], child_argv, envp);
        put("child: execve failed: ");
        put_number(error);
        end_line();
        exit(99);
    }
    int status = 0;
    wait4(child, &status, 0, 0);
    put("first image: child ");
    put_wait_status(status);
    end_line();

    char *missing_argv[] = {"/no/such/program", 0};
    long error = execve("/no/such/program", missing_argv, envp);
    put("first image: execve of a missing program returns ");
    put_number(error);
    put(", data still ");
    put_number(generation);
    end_line();

    char *last_argv[] = {argv[0], "last", 0};
    error = execve(argv[0], last_argv, envp);
    put("first image: execve failed: ");
    put_number(error);
    end_line();
    return 99;
}
