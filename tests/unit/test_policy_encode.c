/* test_policy_encode.c - kumo.encode.* against known vectors (RFC 4648
 * test vectors), round trips and bad input; kumo.digest.* digests and
 * HMACs against published vectors, the Digest object's fields, JSON
 * encoding of non-string arguments, and keysource errors. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
encode_matches_rfc4648_vectors(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local e = kumo.encode\n"
               "assert(e.base64_encode 'foobar' == 'Zm9vYmFy')\n"
               "assert(e.base64_encode 'fooba' == 'Zm9vYmE=')\n"
               "assert(e.base64_nopad_encode 'fo' == 'Zm8')\n"
               "assert(e.base64url_encode '\\xfb\\xff' == '-_8=')\n"
               "assert(e.base64url_nopad_encode '\\xfb\\xff' == '-_8')\n"
               "assert(e.base32_encode 'foobar' == 'MZXW6YTBOI======')\n"
               "assert(e.base32_nopad_encode 'f' == 'MY')\n"
               "assert(e.base32hex_encode 'foobar' == 'CPNMUOJ1E8======')\n"
               "assert(e.base32hex_nopad_encode 'fo' == 'CPNG')\n"
               "assert(e.hex_encode 'A\\0\\xff' == '4100ff')\n"
               "for _, n in ipairs { 'base64', 'base64_nopad', 'base64url',\n"
               "  'base64url_nopad', 'base32', 'base32_nopad', 'base32hex',\n"
               "  'base32hex_nopad', 'hex' } do\n"
               "  for _, s in ipairs { '', 'f', 'fo', 'foo', 'foob', 'fooba',\n"
               "                       'foobar', '\\0\\1\\254\\255' } do\n"
               "    assert(e[n .. '_decode'](e[n .. '_encode'](s)) == s, n)\n"
               "  end\n"
               "end\n"
               "assert(e.hex_decode '4100FF' == 'A\\0\\xff')\n"
               "assert(e.base32_decode 'mzxw6ytboi======' == 'foobar')\n");
}

static void
decode_bad_input_names_the_function(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.encode.base64_decode 'Zm9v!'\n",
              "kumo.encode.base64_decode: invalid symbol at offset 4");
    pfx_fails(fx, "kumo.encode.hex_decode 'abc'\n",
              "kumo.encode.hex_decode: odd number of hex digits");
    pfx_fails(fx, "kumo.encode.hex_decode 'zz'\n",
              "kumo.encode.hex_decode: invalid hex digit at offset 0");
    pfx_fails(
        fx, "kumo.encode.base64_encode {}\n",
        "bad argument #1 to 'base64_encode' (string expected, got table)");
}

static void
digest_objects_give_each_encoding(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local d = kumo.digest.sha1 'hello'\n"
        "assert(tostring(d) == d.hex)\n"
        "assert(d.hex == 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')\n"
        "assert(d.base32 == 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')\n"
        "assert(d.base32hex == 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')\n"
        "assert(d.base64 == 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')\n"
        "assert(d.base64url_nopad == 'qvTGHdzF6KLavt4PO0gs2a6pQ00')\n"
        "assert(#d.bytes == 20)\n"
        "assert(kumo.digest.sha256('abc').hex ==\n"
        "  "
        "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
        "assert(kumo.digest.sha256('a', 'bc').hex == "
        "kumo.digest.sha256('abc').hex)\n"
        "assert(kumo.digest.sha3_256('').hex ==\n"
        "  "
        "'a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a')\n"
        "assert(kumo.digest.sha256({ a = 1 }).hex == "
        "kumo.digest.sha256('{\"a\":1}').hex)\n"
        "assert(#kumo.digest.sha512('x').bytes == 64)\n");
}

static void
hmac_takes_a_keysource(void **state)
{
    struct pfx *fx = *state;
    char path[700], src[1024];

    pfx_ok(fx, "local h = kumo.digest.hmac_sha256({ key_data = 'your key' }, "
               "'your message')\n"
               "assert(h.hex == "
               "'87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb0"
               "7c', h.hex)\n");
    pfx_write(fx, "hmac.key", "your key", path, sizeof(path));
    snprintf(
        src, sizeof(src),
        "local h = kumo.digest.hmac_sha256('%s', 'your message')\n"
        "assert(h.hex == "
        "'87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c')\n",
        path);
    pfx_ok(fx, src);
    pfx_fails(fx, "kumo.digest.hmac_sha1({ vault_path = 'x' }, 'm')\n",
              "kumo.digest.hmac_sha1: HashiCorp Vault keysources");
    pfx_fails(fx, "kumo.digest.hmac_sha1({ key_data = 'k' })\n",
              "bad argument #2 to 'hmac_sha1' (string expected, got no value)");
}

static void
crc32_is_zlibs_crc(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local c = kumo.digest.crc32 'hello'\n"
           "assert(c.hex == '3610a686', c.hex)\n"
           "assert(#c.bytes == 4)\n"
           "assert(kumo.digest.crc32('123456789').hex == 'cbf43926')\n"
           "assert(kumo.digest.crc32('1234', '56789').hex == 'cbf43926')\n");
}

static void
charsets_convert_both_ways(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local E = kumo.encode\n"
        "assert(E.charset_decode('ISO-8859-1', 'caf\\xe9') == "
        "'caf\\xc3\\xa9')\n"
        "assert(E.charset_encode('ISO-8859-1', 'caf\\xc3\\xa9') == "
        "'caf\\xe9')\n"
        "-- the euro sign is not in Latin-1: dropped unless errors are wanted\n"
        "assert(E.charset_encode('ISO-8859-1', 'a\\xe2\\x82\\xacb') == 'ab')\n"
        "local jp = '\\xe3\\x83\\x86\\xe3\\x82\\xb9\\xe3\\x83\\x88'\n"
        "for _, cs in ipairs { 'ISO-2022-JP', 'Shift_JIS', 'EUC-KR', 'KOI8-R' "
        "} do\n"
        "  local ok, enc = pcall(E.charset_encode, cs, jp, false)\n"
        "  if ok then assert(E.charset_decode(cs, enc) == jp, cs) end\n"
        "end\n"
        "local enc = E.charset_encode('ISO-2022-JP', jp)\n"
        "assert(enc:sub(-3) == '\\x1b(B', 'back to ASCII at the end')\n");
    pfx_fails(
        fx,
        "kumo.encode.charset_encode('ISO-8859-1', '\\xe2\\x82\\xac', false)\n",
        "kumo.encode.charset_encode: the input cannot be converted at "
        "byte 0 (invalid)");
    pfx_fails(fx, "kumo.encode.charset_decode('no-such-charset', 'x')\n",
              "kumo.encode.charset_decode: unknown charset 'no-such-charset'");
    pfx_fails(fx, "kumo.encode.charset_decode('UTF-8', '\\xff')\n",
              "kumo.encode.charset_decode: the input cannot be converted");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(encode_matches_rfc4648_vectors,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(decode_bad_input_names_the_function,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(digest_objects_give_each_encoding,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(hmac_takes_a_keysource, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(crc32_is_zlibs_crc, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(charsets_convert_both_ways, pfx_setup,
                                        pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
