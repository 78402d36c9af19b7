-- dkim-signing.lua: a bulk sender that DKIM-signs everything it relays,
-- with RSA and Ed25519 (dual signing, RFC 8463) under the domain of the
-- From header, for mail received over SMTP and injected over HTTP. The
-- RFC 8058 one-click unsubscribe headers are signed, and over-signed so
-- that nobody can add a second copy. See docs/dkim.md for the keys and
-- the DNS records to publish.
local kumo = require 'kumo'

-- The domains we sign for, and their selectors. Keys live in
-- /etc/kumod/dkim/<domain>/<selector>.pem, readable by kumod's --user.
local DKIM = {
  ['example.com'] = { rsa = 's2026', ed25519 = 'e2026' },
  ['news.example.com'] = { rsa = 's2026', ed25519 = 'e2026' },
}

local HEADERS = {
  'From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'Reply-To',
  'MIME-Version', 'Content-Type', 'List-Unsubscribe', 'List-Unsubscribe-Post',
}

kumo.on('init', function()
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:25',
    hostname = 'mta.example.com',
    relay_hosts = { '127.0.0.1', '10.0.0.0/8' },
  }
  kumo.start_http_listener { listen = '127.0.0.1:8000' }
  kumo.define_spool { name = 'data', path = '/var/spool/kumod/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumod/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '/var/log/kumod' }
end)

-- The domain of the From header's address, lowercased, or nil.
local function from_domain(msg)
  local from = msg:get_first_named_header_value('From')
  if not from then
    return nil
  end
  local domain = from:match('@([%w%.%-]+)>?%s*$')
  return domain and domain:lower()
end

-- Sign with each of the domain's keys. A signer is built per message:
-- kumod caches it (and its parsed key) for `ttl` seconds.
local function dkim_sign(msg)
  local domain = from_domain(msg)
  local keys = domain and DKIM[domain]
  if not keys then
    -- Unsigned mail would be junked by the large mailbox providers.
    kumo.reject(550, '5.7.1 no DKIM key for the From domain')
  end
  local dir = '/etc/kumod/dkim/' .. domain .. '/'
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = domain,
    selector = keys.rsa,
    headers = HEADERS,
    over_sign = true,
    key = dir .. keys.rsa .. '.pem',
  })
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = domain,
    selector = keys.ed25519,
    headers = HEADERS,
    over_sign = true,
    key = dir .. keys.ed25519 .. '.pem',
  })
end

kumo.on('smtp_server_message_received', function(msg, conn_meta)
  dkim_sign(msg)
end)

kumo.on('http_message_generated', function(msg, auth)
  dkim_sign(msg)
end)
