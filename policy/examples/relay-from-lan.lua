-- relay-from-lan.lua: a submission relay for a small office. Port 25 on the
-- LAN address relays for the LAN without authentication; port 587 accepts
-- authenticated submission (AUTH PLAIN, offered only after STARTTLS) from
-- anywhere. Both listeners cap message size and recipient count.
local kumo = require 'kumo'

-- Submission users. In production load these from a file or a secret
-- store instead of writing passwords into the policy.
local USERS = {
  ['alice@example.com'] = 'correct horse battery staple',
  ['scanner@example.com'] = 'scan-to-mail',
}

kumo.on('init', function()
  -- LAN relay: trusted by address, no authentication.
  kumo.start_esmtp_listener {
    listen = '192.168.1.10:25',
    hostname = 'relay.example.com',
    relay_hosts = { '127.0.0.1', '::1', '192.168.1.0/24' },
    max_message_size = '25MiB',
    max_recipients_per_message = 100,
    client_timeout = '2 min',
  }

  -- Authenticated submission. Nobody relays by address here
  -- (relay_hosts is empty): an authenticated session may relay.
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:587',
    hostname = 'relay.example.com',
    relay_hosts = {},
    max_message_size = '10MiB',
    max_recipients_per_message = 50,
    max_messages_per_connection = 100,
    tls_certificate = '/etc/kumod/tls/relay.example.com.crt',
    tls_private_key = '/etc/kumod/tls/relay.example.com.key',
  }

  kumo.define_spool {
    name = 'data',
    path = '/var/spool/kumod/data',
    kind = 'RocksDB',
  }
  kumo.define_spool {
    name = 'meta',
    path = '/var/spool/kumod/meta',
    kind = 'RocksDB',
  }

  kumo.configure_local_logs {
    log_dir = '/var/log/kumod',
    max_segment_duration = '5 minutes',
    meta = { 'authn_id' },
  }
end)

-- AUTH PLAIN: authz is the identity to act as (usually empty), authc the
-- user name. Returning true answers 235; false answers 535.
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authz ~= '' and authz ~= authc then
    return false
  end
  return USERS[authc] ~= nil and USERS[authc] == password
end)

-- Mail to our own domain is accepted from anyone; everything else needs
-- the LAN or an authenticated session.
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'example.com' then
    return kumo.make_listener_domain { relay_to = true }
  end
end)

-- Authenticated senders may only use their own address as envelope sender.
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local user = conn_meta:get_meta('authn_id')
  if user and sender.email ~= user then
    kumo.reject(550, '5.7.1 sender address does not match the login')
  end
end)
