"""NATS security: users, permissions, credentials files, the server config.

Layout under `HIVE_HOME/nats/` (every file 0600, the directory 0700):

    users.json           the source of truth: user -> {password, role, agent?}
    auth.conf            the `accounts { HIVE { ... } }` block rendered from it
    nats-server.conf     a server config that includes auth.conf (pid_file,
                         JetStream); `nats-server -c` takes it
    creds/<user>.env     one credentials file per user, in env-file syntax
                         (HIVE_NATS_USER, HIVE_NATS_PASSWORD,
                         HIVE_NATS_INBOX_PREFIX) so systemd `EnvironmentFile=`
                         and compose `env_file:` read it as is

Users: `svc_<service>` for broker, deployer, dashboard and backup,
`agent_<name>` for each agent (its harness and MCP bridge), and `operator`
(the CLI and the nats CLI). Every user has its own inbox prefix
`_INBOX_<user>` and may subscribe only to its own inbox, so nobody reads
another user's replies. An agent's or the operator's replies to requests it
serves are allowed by `allow_responses` only; services may also publish to
every user's inbox, because a config reload (each agent issued or revoked)
forgets the reply rights `allow_responses` gave for requests in flight.

A process picks its credentials with `HIVE_NATS_CREDS=<file>` (this env-file
format, or a NATS JWT `.creds` file), or `HIVE_NATS_USER` +
`HIVE_NATS_PASSWORD` (+ `HIVE_NATS_INBOX_PREFIX`, default `_INBOX_<user>`);
`connect_nats` honours them (see `resolve_credentials`).

The deployer calls `issue_agent(home, name)` at spawn (returns the env to give
the harness) and `revoke_agent(home, name)` at destroy; both re-render the
config and ask the running nats-server to reload it (SIGHUP through its pid
file), which disconnects a revoked user at once.

Modules: `policy` (users and their permissions, from the op registry), `render` (the
config and credentials text), `paths` (the layout above), `store` (users.json and the
files rendered from it; `hive up`'s setup), `reload` (the running server), `client`
(a process's own credentials). This package re-exports their public names.
"""

from hivewire.natsauth.client import IDENTITY_ENV, Credentials, parse_env_file, resolve_credentials
from hivewire.natsauth.paths import auth_dir, config_path, creds_path, pid_path
from hivewire.natsauth.policy import (
    ACCOUNT,
    INBOX_ROOT,
    MANAGER_DEPLOYER_VERBS,
    OPERATOR_USER,
    SERVICES,
    agent_permissions,
    agent_user,
    inbox_prefix,
    operator_permissions,
    permissions_for,
    service_permissions,
    service_user,
)
from hivewire.natsauth.reload import check_config, reload_server
from hivewire.natsauth.render import ClusterNode, creds_text, render_auth, render_server_config
from hivewire.natsauth.store import (
    AuthSetup,
    enabled,
    generate,
    issue_agent,
    prepare_auth,
    revoke_agent,
    users,
    write_cluster_config,
    write_secret,
)

__all__ = [
    "ACCOUNT", "IDENTITY_ENV", "INBOX_ROOT", "MANAGER_DEPLOYER_VERBS", "OPERATOR_USER", "SERVICES",
    "AuthSetup", "ClusterNode", "Credentials",
    "agent_permissions", "agent_user", "auth_dir", "check_config", "config_path", "creds_path", "creds_text",
    "enabled", "generate", "inbox_prefix", "issue_agent", "operator_permissions", "parse_env_file",
    "permissions_for", "pid_path", "prepare_auth", "reload_server", "render_auth", "render_server_config",
    "resolve_credentials", "revoke_agent", "service_permissions", "service_user", "users",
    "write_cluster_config", "write_secret",
]
