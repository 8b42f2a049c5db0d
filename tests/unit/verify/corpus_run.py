"""The real corpus run (../shared/corpus/falco-alerts): run id, container names, triggers.

A module of its own (not conftest) so test files can import it by a unique name.
"""

# The corpus run: container purple-<RUN_ID>-<slug>. Its slugs carry an ordinal and older names,
# so the run records the container names it used, as the runner does.
RUN_ID = "20261129T190808-17793"
CORPUS_CONTAINERS = {
    "release_agent": "01_release_agent",
    "nsenter": "02_setns_nsenter",
    "privileged_mount": "03_privileged_mount",
    "docker_sock": "04_docker_sock",
    "reverse_shell": "05_reverse_shell",
    "sensitive_file_read": "06_sensitive_read",
}
# Trigger instants chosen shortly before each scenario's first real alert; the expected latencies
# in the tests are worked out by hand from the corpus timestamps.
TRIGGERS = {
    "release_agent": "2026-11-29T19:08:12.500000000Z",
    "nsenter": "2026-11-29T19:08:15.000000000Z",
    "privileged_mount": "2026-11-29T19:08:17.750000000Z",
    "docker_sock": "2026-11-29T19:08:20.250000000Z",
    "reverse_shell": "2026-11-29T19:08:23.000000000Z",
    "sensitive_file_read": "2026-11-29T19:08:26.000000000Z",
}
