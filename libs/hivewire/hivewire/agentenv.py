"""Which environment variables reach an agent: an allowlist, in one place.

Two consumers: the deployer, which starts an agent's (trusted) harness, and the
harness, which starts the agent CLI inside its sandbox. Neither ever passes on
the operator token, NATS credentials, `SSH_AUTH_SOCK`, cloud keys or anything
else that merely happens to be in the service's own environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from hivewire import config

# Names the inner command may get from the harness's own environment.
INNER_PASS = {"LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR",
              "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"}
# Names (or name prefixes, ending in `*`) a harness env or an agent's `hive.env` may set on the
# inner command: tuning knobs, never credentials, proxies, loader or interpreter hooks.
TUNING = ("LC_*", "CLAUDE_CODE_*", "DISABLE_*", "MCP_*", "ENABLE_TOOL_SEARCH", "MAX_THINKING_TOKENS",
          "MAX_MCP_OUTPUT_TOKENS", "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS", "BASH_MAX_OUTPUT_LENGTH",
          "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_*_MODEL", "GIT_AUTHOR_NAME",
          "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")
# Never from a config, whatever an operator lists: they would steer the sandbox or the model endpoint.
NEVER_FROM_CONFIG = re.compile(r"^(LD_.*|PATH|HOME|SHELL|USER|LOGNAME|TMPDIR|CLAUDE_CONFIG_DIR|NODE_OPTIONS|"
                               r"NODE_PATH|BASH_ENV|ENV|PYTHON.*|PERL5.*|RUBY.*|GIT_CONFIG.*|GIT_DIR|GIT_EXEC_PATH|"
                               r"HIVE_.*|ANTHROPIC_(API_KEY|AUTH_TOKEN|BASE_URL)|CLAUDE_CODE_OAUTH_TOKEN|"
                               r"(HTTPS?|ALL|NO|FTP)_PROXY|(https?|all|no|ftp)_proxy|SSL_CERT_.*|NODE_EXTRA_CA_CERTS)$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _extra_allowed(extra: str | None) -> set[str]:
    text = config.SANDBOX_ENV_ALLOW.get() if extra is None else extra
    return {n for n in re.split(r"[ ,]+", text) if NAME_RE.fullmatch(n)}


def config_env_allowed(name: str, *, extra: str | None = None) -> bool:
    """May an agent's `hive.env` set `name` on its inner command? (`extra`: the operator's
    own additions, `HIVE_SANDBOX_ENV_ALLOW` unless given.)"""
    if not NAME_RE.fullmatch(name) or NEVER_FROM_CONFIG.fullmatch(name):
        return False
    if name in _extra_allowed(extra):
        return True
    return any(_pattern(p, name) for p in TUNING)


def _pattern(p: str, name: str) -> bool:
    if "*" not in p:
        return name == p
    head, tail = p.split("*", 1)
    return name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)


def filter_config_env(env: Mapping[str, str], *, extra: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The allowed part of a config's env, and the names refused."""
    ok = {k: v for k, v in env.items() if config_env_allowed(k, extra=extra)}
    return ok, sorted(set(env) - set(ok))



HARNESS_PASS = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "PYTHONPATH",
                "VIRTUAL_ENV", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR"}
# The harness's own knobs pass (the HIVE_* variables hivewire.config declares; any other
# HIVE_* name configures nothing of Hive's, so it stays behind), never the service's NATS
# identity or a secret (the operator token): the deployer gives the harness its own.
HARNESS_NEVER = {config.OPERATOR_TOKEN.name, config.NATS_CREDS.name, config.NATS_USER.name,
                 config.NATS_PASSWORD.name, config.NATS_INBOX_PREFIX.name}


def harness_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What of a service's environment an agent's harness inherits (copied, not read: the
    harness reads its variables through hivewire.config)."""
    e = os.environ if env is None else env
    return {k: v for k, v in e.items()
            if k not in HARNESS_NEVER and (k in HARNESS_PASS or k in config.VARS or k in INNER_PASS
                                          or config_env_allowed(k, extra=""))}
