// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include "tproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t tp_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tp_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void tp_sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int tp_send(int fd, uint64_t v)
{
	ssize_t n;

	do
		n = write(fd, &v, sizeof(v));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(v) ? 0 : -EPIPE;
}

int tp_recv(int fd, uint64_t *ret, int timeout_ms)
{
	int64_t end = tp_boot_ns() + (int64_t)timeout_ms * 1000000;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	size_t got = 0;
	uint64_t v;

	while (got < sizeof(v)) {
		int64_t left = (end - tp_boot_ns() + 999999) / 1000000;
		ssize_t n;
		int r;

		if (timeout_ms < 0)
			left = -1; /* no limit */
		else if (left < 0)
			left = 0; /* look once even so: a timeout of 0 polls */
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ETIMEDOUT;
		n = read(fd, (char *)&v + got, sizeof(v) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		got += (size_t)n;
	}
	*ret = v;
	return 0;
}

void *tp_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int tp_status_code(int status, int sig_base)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return sig_base + WTERMSIG(status);
	return -1;
}

int tp_wait_pid(pid_t pid, int timeout_ms, int sig_base)
{
	int64_t end = tp_boot_ns() + (int64_t)timeout_ms * 1000000;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return tp_status_code(status, sig_base);
		if (r < 0 && errno != EINTR)
			return -1;
		if (tp_boot_ns() >= end) {
			fprintf(stderr, "process %d did not exit in %d ms; killing it\n", (int)pid,
			        timeout_ms);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		tp_sleep_ms(2);
	}
}

int tp_spawn(pid_t parent, int orphan_code, int extra_fd, void (*fn)(int rx, int tx, void *arg),
             void *arg, pid_t *ret_pid, int *ret_tx, int *ret_rx)
{
	int down[2], up[2], e;
	pid_t pid;

	if (pipe2(down, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(up, O_CLOEXEC) < 0) {
		e = -errno;
		close(down[0]);
		close(down[1]);
		return e;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		e = -errno;
		close(down[0]);
		close(down[1]);
		close(up[0]);
		close(up[1]);
		return e;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(orphan_code);
		alarm(0);
		if (extra_fd >= 0)
			close(extra_fd);
		close(down[1]);
		close(up[0]);
		fn(down[0], up[1], arg);
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	*ret_pid = pid;
	*ret_tx = down[1];
	*ret_rx = up[0];
	return 0;
}

ssize_t tp_read_file(const char *path, char *buf, size_t cap)
{
	ssize_t n, got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got < cap - 1 && (n = read(fd, buf + got, cap - 1 - (size_t)got)) > 0)
		got += n;
	close(fd);
	buf[got] = 0;
	return got;
}

int tp_json_get(const char *json, const char *key, char *buf, size_t cap)
{
	char pat[80];
	const char *p, *e;
	int depth = 0, instr = 0;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	for (e = p; *e; e++) {
		if (instr) {
			if (*e == '\\' && e[1])
				e++;
			else if (*e == '"')
				instr = 0;
		} else if (*e == '"') {
			instr = 1;
		} else if (*e == '{' || *e == '[') {
			depth++;
		} else if ((*e == '}' || *e == ']') && depth-- == 0) {
			break;
		} else if (*e == ',' && depth == 0) {
			break;
		}
	}
	snprintf(buf, cap, "%.*s", (int)(e - p), p);
	return 0;
}
