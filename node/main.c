/* main.c - kumod's command line, privilege drop and start-up order:
 * parse options, load the policy and run init (listeners bind here, as
 * root if started as root), drop to --user, open logs, spools and raft,
 * then run the loop until a graceful shutdown. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "kumod.h"

#define KUMOD_DEFAULT_POLICY "/etc/kumod/policy.lua"

static void
kumod_usage(FILE *f)
{
    fprintf(f,
            "Usage: kumod --policy FILE [--user NAME] [--validate]\n"
            "\n"
            "kumod is a clustered mail transfer agent configured by a Lua\n"
            "policy in KumoMTA's dialect.\n"
            "\n"
            "Options:\n"
            "  --policy FILE  the Lua policy to load (default %s)\n"
            "  --user NAME    drop privileges to NAME after binding the\n"
            "                 listeners; required when started as root\n"
            "                 (--user root keeps root on purpose)\n"
            "  --validate     load the policy and run its init event without\n"
            "                 binding listeners or opening the spool, then\n"
            "                 exit 0 if it is valid, 1 if not\n"
            "  --version      print the version and exit\n"
            "  --help         print this help and exit\n"
            "\n"
            "Environment: KUMOD_LOG sets the diagnostic log filter\n"
            "(error, warn, info, debug, plus trace categories smtp, queue,\n"
            "spool, cluster, policy, io; e.g. KUMOD_LOG=debug,smtp).\n",
            KUMOD_DEFAULT_POLICY);
}

/* Drop to `user` (root-started daemons only), after the listeners are
 * bound; the directories kumod writes are created for that user first. A
 * non-root start must name the current user or none. */
static void
kumod_drop_privileges(struct kumod *kd, const char *user)
{
    struct passwd *pw;
    char err[1024];

    if (user == NULL) {
        return;
    }
    pw = getpwnam(user);
    if (pw == NULL) {
        km_fatal("kumod: --user %s: no such user", user);
    }
    if (geteuid() == 0 && pw->pw_uid != 0 &&
        kumod_prepare_dirs(kd, pw->pw_uid, pw->pw_gid, err, sizeof(err)) != 0) {
        km_fatal("kumod: --user %s: cannot prepare %s", user, err);
    }
    if (geteuid() != 0) {
        if (pw->pw_uid != geteuid()) {
            km_fatal("kumod: --user %s: only root can switch users", user);
        }
        return;
    }
    if (pw->pw_uid == 0) {
        LOG_INFO("kumod: running as root, as --user root asks");
        return;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        km_fatal("kumod: --user %s: cannot drop privileges: %s", user,
                 strerror(errno));
    }
    if (setuid(0) == 0) {
        km_fatal("kumod: --user %s: privileges could be regained", user);
    }
    LOG_INFO("kumod: running as %s (uid %u)", pw->pw_name,
             (unsigned)pw->pw_uid);
}

/* Allow as many open files as the hard limit permits: every SMTP session
 * and every RocksDB table is one. */
static void
kumod_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"user", required_argument, NULL, 'u'},
        {"validate", no_argument, NULL, 'V'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *policy_path = KUMOD_DEFAULT_POLICY;
    const char *user = NULL;
    bool validate = false;
    char err[2048] = "";
    struct kumod kd;
    uv_loop_t loop;
    int c, rv;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            policy_path = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'V':
            validate = true;
            break;
        case 'v':
            printf("kumod %s\n", KUMO_VERSION);
            return 0;
        case 'h':
            kumod_usage(stdout);
            return 0;
        default:
            kumod_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kumod: unexpected argument '%s'\n", argv[optind]);
        kumod_usage(stderr);
        return 2;
    }
    const char *filter = getenv("KUMOD_LOG");
    if (filter != NULL && log_set_filter(filter) != 0) {
        fprintf(stderr, "kumod: KUMOD_LOG='%s' is not a valid filter\n",
                filter);
        return 2;
    }
    if (geteuid() == 0 && user == NULL && !validate) {
        km_fatal("kumod: refusing to run as root without --user: pass "
                 "--user NAME to drop privileges after binding, or "
                 "--user root to run as root on purpose");
    }
    /* A peer that goes away mid-write must not kill the daemon (raft's
     * transport writes to dead peers: CLUSTER.md §1.4 item 2). */
    signal(SIGPIPE, SIG_IGN);
    kumod_raise_nofile();
    km_hostname_init();
    uv_loop_init(&loop);
    kumod_init(&kd, &loop, policy_path, validate);

    rv = kumod_load(&kd, err, sizeof(err));
    kumod_watch_signals(&kd);
    if (rv != 0) {
        LOG_ERROR("kumod: %s", err);
        kd.exit_status = 1;
    } else if (validate) {
        LOG_INFO("kumod: %s is valid", policy_path);
    } else {
        kumod_drop_privileges(&kd, user);
        rv = kumod_start(&kd, err, sizeof(err));
        if (rv != 0) {
            LOG_ERROR("kumod: %s", err);
            kd.exit_status = 1;
        }
    }
    /* Every way out is the graceful shutdown, so whatever init bound or
     * opened is closed in order. */
    if (rv != 0 || validate) {
        kumod_request_shutdown(&kd);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!validate) {
        LOG_INFO("kumod: stopped");
    }
    kumod_fini(&kd);
    if (uv_loop_close(&loop) != 0) {
        LOG_WARN("kumod: loop closed with handles still open");
    }
    return kd.exit_status;
}
