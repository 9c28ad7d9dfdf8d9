/* The service-manager notification (core/sd_notify.c): datagrams reach a socket named by a path or
 * an abstract name, nothing is sent without $NOTIFY_SOCKET, and a bad value is an error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_notify.h"

/* A datagram socket bound to name (a path, or '@' + abstract name), as systemd's. */
static int listener(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@') sa.sun_path[0] = '\0';
    assert_int_equal(
        bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)), 0);
    return fd;
}

static void receive(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
}

static void test_path_socket(void **state)
{
    (void)state;
    char path[] = "/tmp/pc-notify-XXXXXX";
    assert_non_null(mkdtemp(path));
    char sock[64];
    snprintf(sock, sizeof sock, "%s/notify", path);
    int fd = listener(sock);
    setenv("NOTIFY_SOCKET", sock, 1);
    assert_int_equal(pc__sd_notify("READY=1"), 1);
    char buf[256];
    receive(fd, buf, sizeof buf);
    assert_string_equal(buf, "READY=1");
    assert_int_equal(pc__sd_notify_reloading(), 1);
    receive(fd, buf, sizeof buf);
    assert_true(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
    assert_true(strtoull(buf + 27, NULL, 10) > 0);
    unsetenv("NOTIFY_SOCKET");
    close(fd);
    unlink(sock);
    rmdir(path);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@pc-notify-test-%d", (int)getpid());
    int fd = listener(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(pc__sd_notify("STOPPING=1"), 1);
    char buf[64];
    receive(fd, buf, sizeof buf);
    assert_string_equal(buf, "STOPPING=1");
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

static void test_unset_and_invalid(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(pc__sd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(pc__sd_notify("READY=1"), -1);
    assert_int_equal(errno, EINVAL);
    /* Nobody listens there: the error is reported, not hidden. */
    setenv("NOTIFY_SOCKET", "/nonexistent/pc-notify", 1);
    assert_int_equal(pc__sd_notify("READY=1"), -1);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_unset_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
