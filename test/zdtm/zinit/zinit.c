/*
 * zinit is the init of a container that runs one of CRIU's zdtm tests.
 *
 * A zdtm test daemonizes: its first process exits as soon as the test is
 * ready and has written its pid file, so the test cannot be the container's
 * init itself. zinit runs the test's command line, waits for that first
 * process and then creates READY (the harness waits for it before it
 * dumps). The test's daemon, reparented to zinit, runs until zinit gets
 * SIGTERM: zinit passes SIGTERM on to the pid in the test's pid file, which
 * makes the test check its state and write PASS or FAIL into its out file,
 * waits for it and exits with 0 when it exited with 0. Meanwhile zinit reaps
 * every orphan, as an init must.
 *
 * usage: zinit READY PIDFILE COMMAND [ARG...]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "zinit: %s: %s\n", what, strerror(errno));
	exit(3);
}

/* read_pid returns the pid in path, or -1. */
static pid_t read_pid(const char *path)
{
	char buf[32] = { 0 };
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	return (pid_t)strtol(buf, NULL, 10);
}

/* wait_for reaps children until pid has exited and returns its status. */
static int wait_for(pid_t pid)
{
	int status;

	for (;;) {
		pid_t p = waitpid(-1, &status, 0);

		if (p < 0) {
			if (errno == EINTR)
				continue;
			die("waitpid");
		}
		if (p == pid)
			return status;
	}
}

/* reap collects exited orphans; it reports whether test was among them. */
static int reap(pid_t test, int *status)
{
	int st, found = 0;
	pid_t p;

	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p == test) {
			*status = st;
			found = 1;
		}
	}
	return found;
}

int main(int argc, char **argv)
{
	sigset_t set, old;
	pid_t launcher, test;
	int status, fd;

	if (argc < 4) {
		fprintf(stderr, "usage: zinit READY PIDFILE COMMAND [ARG...]\n");
		return 2;
	}
	/* Signals wait in the mask for sigwaitinfo: no handler can race the
	 * checkpoint, and a restored zinit resumes in the same loop. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, &old))
		die("sigprocmask");

	launcher = fork();
	if (launcher < 0)
		die("fork");
	if (launcher == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		execv(argv[3], argv + 3);
		die(argv[3]);
	}
	status = wait_for(launcher);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "zinit: %s did not start (status 0x%x)\n", argv[3], status);
		return 1;
	}
	test = read_pid(argv[2]);
	if (test <= 0) {
		fprintf(stderr, "zinit: no pid in %s\n", argv[2]);
		return 1;
	}
	fd = open(argv[1], O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		die(argv[1]);
	close(fd);

	for (;;) {
		int sig = sigwaitinfo(&set, NULL);

		if (sig < 0) {
			if (errno == EINTR)
				continue;
			die("sigwaitinfo");
		}
		if (sig == SIGCHLD) {
			if (reap(test, &status)) {
				fprintf(stderr, "zinit: test %d ended before SIGTERM (status 0x%x)\n", test, status);
				return 1;
			}
			continue;
		}
		if (kill(test, SIGTERM))
			die("kill test");
		status = wait_for(test);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "zinit: test %d ended with status 0x%x\n", test, status);
			return 1;
		}
		return 0;
	}
}
