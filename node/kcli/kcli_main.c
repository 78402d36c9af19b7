/* kcli_main.c - kcli's entry point: global options (--endpoint, --json,
 * --help, --version), then either one subcommand (one-shot form) or, with
 * no subcommand on a terminal, the interactive `kumo>` shell. Without a
 * subcommand and without a terminal it prints its usage and exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"
#include "kcli/kcli_int.h"

static const char kcli_main_usage[] =
    "usage: kcli [--endpoint URL] [--json] SUBCOMMAND [ARGS]\n"
    "       kcli [--endpoint URL]            (interactive kumo> shell)\n";

static void
kcli_main_help(void)
{
    struct buf out = BUF_INIT;

    buf_append_str(&out, kcli_main_usage);
    buf_append_str(&out,
                   "\nkumod's command-line client. The endpoint is --endpoint, "
                   "else $" KCLI_ENDPOINT_ENV ",\nelse " KCLI_DEFAULT_ENDPOINT
                   ".\n\nOptions:\n"
                   "  --endpoint URL  kumod's HTTP listener\n"
                   "  --json          print raw JSON answers\n"
                   "  --help          this text; SUBCOMMAND --help for one "
                   "subcommand\n"
                   "  --version       print the version\n\nSubcommands:\n");
    kcli_cmd_help_all(&out);
    fputs(buf_cstr(&out), stdout);
    buf_fini(&out);
}

int
main(int argc, char **argv)
{
    struct kcli_opts opts;
    struct kcli_http *h = NULL;
    struct buf err = BUF_INIT;
    int code;

    if (kcli_opts_parse(argc, argv, getenv(KCLI_ENDPOINT_ENV), &opts, &err) !=
        0) {
        fprintf(stderr, "kcli: %s\n%s", buf_cstr(&err), kcli_main_usage);
        buf_fini(&err);
        return KCLI_EXIT_USAGE;
    }
    if (opts.version) {
        printf("kcli %s\n", KUMO_VERSION);
        return KCLI_EXIT_OK;
    }
    if (opts.help) {
        kcli_main_help();
        return KCLI_EXIT_OK;
    }
    if (opts.first_arg >= argc && !isatty(STDIN_FILENO)) {
        fputs(kcli_main_usage, stderr);
        return KCLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        kcli_http_new(opts.endpoint, &h) != 0) {
        fprintf(stderr, "kcli: cannot initialise libcurl\n");
        return KCLI_EXIT_FAIL;
    }
    if (opts.first_arg >= argc) {
        code = kcli_shell(h, opts.json);
    } else {
        code = kcli_run(h, opts.json, argc - opts.first_arg,
                        argv + opts.first_arg);
    }
    kcli_http_free(h);
    curl_global_cleanup();
    return code;
}
