/* kcli_http.c - kcli's blocking HTTP client on libcurl's easy interface:
 * one handle per endpoint, reused across the commands of a shell session
 * so the connection stays open. The only file of kcli that calls libcurl;
 * it neither parses nor prints. Single threaded. */
#include "kcli/kcli_int.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/km.h"

/* A server that accepts the connection but never answers must not hang a
 * shell forever. */
#define KCLI_HTTP_CONNECT_TIMEOUT_MS 5000L
#define KCLI_HTTP_TIMEOUT_MS         60000L

struct kcli_http {
    CURL *curl;
    char *endpoint; /* without trailing slashes */
};

static size_t
kcli_http_on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct buf *resp = arg;

    buf_append(resp, p, size * nmemb);
    return size * nmemb;
}

int
kcli_http_new(const char *endpoint, struct kcli_http **out)
{
    struct kcli_http *h;
    size_t n = strlen(endpoint);

    h = km_calloc(1, sizeof(*h));
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        free(h);
        return KM_EIO;
    }
    while (n > 0 && endpoint[n - 1] == '/') {
        n--;
    }
    h->endpoint = km_strndup(endpoint, n);
    *out = h;
    return 0;
}

void
kcli_http_free(struct kcli_http *h)
{
    if (h == NULL) {
        return;
    }
    curl_easy_cleanup(h->curl);
    free(h->endpoint);
    free(h);
}

const char *
kcli_http_endpoint(const struct kcli_http *h)
{
    return h->endpoint;
}

int
kcli_http_call(struct kcli_http *h, const char *method, const char *path,
               const char *body, long *status, struct buf *resp,
               struct buf *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    char *url = km_asprintf("%s%s", h->endpoint, path);
    CURLcode rc;
    int rv = 0;

    curl_easy_reset(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     KCLI_HTTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, KCLI_HTTP_TIMEOUT_MS);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, kcli_http_on_data);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "kcli/" KUMO_VERSION);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (body != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(h->curl);
    if (rc != CURLE_OK) {
        buf_append_str(err,
                       errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
        rv = KM_EIO;
    } else {
        curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
    }
    curl_slist_free_all(hdrs);
    free(url);
    return rv;
}
