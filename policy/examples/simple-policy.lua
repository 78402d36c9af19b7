-- simple-policy.lua: KumoMTA's "simple policy" example, adapted to kumod.
-- A public MX-style listener that relays for the local network and accepts
-- inbound mail for example.com. Install as /etc/kumod/policy.lua.
local kumo = require 'kumo'

kumo.on('init', function()
  -- Accept SMTP on every interface, port 25. Hosts in relay_hosts may
  -- relay to any domain; everyone else only to domains that
  -- get_listener_domain below marks with relay_to.
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    hostname = 'mail.example.com',
    relay_hosts = { '127.0.0.1', '::1', '192.168.1.0/24' },
  }

  -- Message bodies and metadata are kept in separate RocksDB spools.
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

  -- JSON log records, one zstd segment per minute at most.
  kumo.configure_local_logs {
    log_dir = '/var/log/kumod',
    max_segment_duration = '1 minute',
  }
end)

-- Called for each RCPT TO domain: anyone may send to example.com (we are
-- its MX); other domains fall back to relay_hosts.
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'example.com' then
    return kumo.make_listener_domain {
      relay_to = true,
    }
  end
end)
