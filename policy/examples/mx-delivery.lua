-- mx-delivery.lua: a relay that delivers by MX, with two egress sources
-- in a weighted pool and per-destination shaping. Adjust the addresses,
-- names and paths to your host.
local kumo = require 'kumo'

kumo.on('init', function()
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    hostname = 'mta.example.com',
    relay_hosts = { '127.0.0.1', '10.0.0.0/8' },
  }
  kumo.define_spool { name = 'data', path = '/var/spool/kumod/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumod/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '/var/log/kumod', max_segment_duration = '1 min' }
  -- The resolver kumod uses for MX, A and AAAA lookups.
  kumo.dns.configure_resolver { name_servers = { '127.0.0.53:53' } }
end)

-- Tenants choose their queue; every queue retries with KumoMTA's backoff.
kumo.on('smtp_server_message_received', function(msg)
  local tenant = msg:get_first_named_header_value('X-Tenant')
  if tenant then
    msg:set_meta('tenant', tenant)
    msg:remove_all_named_headers('X-Tenant')
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    egress_pool = 'outbound',
    retry_interval = '10 min',
    max_retry_interval = '4 hours',
    max_age = '3 days',
  }
end)

-- Two source addresses; the first carries twice the traffic of the second.
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool {
    name = name,
    entries = {
      { name = 'ip-1', weight = 2 },
      { name = 'ip-2', weight = 1 },
    },
  }
end)

local sources = {
  ['ip-1'] = { source_address = '192.0.2.10', ehlo_domain = 'mta1.example.com' },
  ['ip-2'] = { source_address = '192.0.2.11', ehlo_domain = 'mta2.example.com' },
}

kumo.on('get_egress_source', function(name)
  local s = sources[name]
  return kumo.make_egress_source {
    name = name,
    source_address = s.source_address,
    ehlo_domain = s.ehlo_domain,
  }
end)

-- Shaping per destination site; big providers get gentler limits.
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  if site_name:find('google%.com$') then
    return kumo.make_egress_path {
      connection_limit = 5,
      max_message_rate = '100/s',
      enable_tls = 'Required',
    }
  end
  return kumo.make_egress_path {
    connection_limit = 10,
    max_connection_rate = '100/min',
    max_deliveries_per_connection = 100,
    idle_timeout = '60s',
    enable_tls = 'Opportunistic',
  }
end)
