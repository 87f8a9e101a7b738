# One teleportd per Nomad client node: a system job (docs/fleet.md#nomad
# explains every choice here). raw_exec runs the packaged teleportd as
# root on the host, as the systemd unit does, so jobs see the host's
# files and teleportd can make their cgroups and namespaces; enable it in
# the client's configuration (plugin "raw_exec" { config { enabled = true } }).
#
# Certificates per host come from Vault's PKI secrets engine through the
# template stanza: a role "teleportd-server" on mount "pki-teleportd" that
# may issue for the nodes' names and addresses. A host that has its
# certificates already (jw-certs, copied by configuration management)
# uses them instead: see the comment at the "cert" and "key" keys.
job "teleportd" {
  type = "system"

  # Every Linux client; narrow it with a node class or metadata.
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  update {
    max_parallel = 1
    stagger      = "30s"
  }

  group "teleportd" {
    network {
      port "grpc" {
        static = 3000
      }
    }

    # Restart in place rather than being rescheduled: there is no other
    # node this teleportd could move to.
    restart {
      attempts = 10
      interval = "10m"
      delay    = "5s"
      mode     = "delay"
    }

    task "teleportd" {
      driver = "raw_exec"

      config {
        command = "/usr/sbin/teleportd"
        args    = ["--config", "${NOMAD_SECRETS_DIR}/teleportd.conf"]
      }

      # teleportd stops its jobs itself (SIGTERM, --stop-timeout, SIGKILL)
      # and then its streams; Nomad must wait for that.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      vault {
        policies    = ["teleportd-server"]
        change_mode = "noop"
      }

      # teleportd --config: the keys are the flags' long names. The secrets
      # directory is readable by the task alone (teleportd refuses a file
      # anyone may write).
      template {
        destination = "${NOMAD_SECRETS_DIR}/teleportd.conf"
        perms       = "0600"
        change_mode = "restart"
        data        = <<-EOT
          # Made by Nomad for {{ env "node.unique.name" }}
          addr = {{ env "NOMAD_IP_grpc" }}:{{ env "NOMAD_PORT_grpc" }}
          cacert = /etc/teleportd/ca.cert
          # From Vault below; with host-managed certificates instead:
          #   cert = /etc/teleportd/server.cert
          #   key = /etc/teleportd/server.key
          cert = {{ env "NOMAD_SECRETS_DIR" }}/server.pem
          key = {{ env "NOMAD_SECRETS_DIR" }}/server.pem
          # On the host, outside the allocation, so that job records and
          # output survive a new allocation.
          data-dir = /var/lib/teleportd
          log-level = info
          max-jobs = 256
          max-jobs-per-client = 32
        EOT
      }

      # The node's server key and certificate, issued for its name and
      # address (what clients put in --addr) plus loopback for probes, in
      # one file: two pkiCert calls could each issue a certificate of their
      # own, and a key from one would not match the other. teleportd reads
      # the certificate and the key from the same PEM file. A new one
      # restarts teleportd, which reads its certificate at start.
      template {
        destination = "${NOMAD_SECRETS_DIR}/server.pem"
        perms       = "0600"
        change_mode = "restart"
        splay       = "5m"
        data        = <<-EOT
          {{ with pkiCert "pki-teleportd/issue/teleportd-server" (printf "common_name=%s" (env "node.unique.name")) (printf "ip_sans=%s,127.0.0.1" (env "NOMAD_IP_grpc")) "alt_names=localhost" "ttl=720h" }}{{ .Key }}
          {{ .Cert }}{{ end }}
        EOT
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
