"""Static checks of the container deployment files (docker-compose.yml, Dockerfile, ...).

No Docker engine is needed: the files are parsed and cross-checked against each
other and against the code, to catch the mistakes a user would only notice when
`docker compose up` fails or the platform cannot reach its stores.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCKER_WORKSPACE = ROOT / "workspace.docker.yaml"
DAGSTER_YAML = ROOT / "dagster.yaml"
POSTGRES_INIT_DIR = "/docker-entrypoint-initdb.d"

DAGSTER_SERVICES = ("code", "webserver", "daemon")
COLLECTOR = "collector"
MONITORING = ("prometheus", "grafana")
# The read API (another service of the same image) listens here; Prometheus scrapes it.
API_SERVICE, API_PORT = "api", "8089"
ALL_SERVICES = ("postgres", "clickhouse", *DAGSTER_SERVICES, COLLECTOR, API_SERVICE, *MONITORING)
STORES = ("postgres", "clickhouse")
# Variables the platform reads (settings.py, definitions.py, dagster.yaml).
REQUIRED_ENV = (
    "DATABASE_URL",
    "DAGSTER_POSTGRES_URL",
    "CLICKHOUSE_URL",
    "LANDING_DIR",
    "DAGSTER_HOME",
)

# Compose interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ...
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
)
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
ENV_VAR_IN_CODE = re.compile(r"""EnvVar\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")


# --------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "docker-compose.yml has no `services` mapping"
    )
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _service(services: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in services, f"docker-compose.yml has no `{name}` service"
    return services[name] or {}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, list (`KEY=value`) or mapping form, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _option(args: list[str], *names: str) -> str | None:
    """Value of a CLI option given as `-x value`, `--name value` or `--name=value`."""
    for index, arg in enumerate(args):
        if arg in names and index + 1 < len(args):
            return args[index + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _render(value: str) -> str:
    """Interpolate as compose would with nothing set: defaults apply, the rest stay named."""

    def replace(match: re.Match[str]) -> str:
        if match["op"] in (":-", "-"):
            return match["arg"]
        return f"<{match['name']}>"

    return INTERPOLATION.sub(replace, value)


def _split_url(url: str) -> dict[str, str]:
    """scheme, user, password, host, port and path of a URL holding ${...} interpolations.

    urllib cannot be used: `${USER:-default}` contains a colon.
    """
    match = re.fullmatch(
        r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
        r"(?:(?P<user>\$\{[^}]*\}|[^:@/]*)(?::(?P<password>\$\{[^}]*\}|[^@/]*))?@)?"
        r"(?P<host>[^:/]+)(?::(?P<port>\d+))?(?P<path>/[^?#]*)?.*",
        url,
    )
    assert match, f"not a URL: {url!r}"
    return {key: value or "" for key, value in match.groupdict().items()}


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume, short (`src:dst[:mode]`) or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume.get("target", ""))))
        else:
            parts = str(volume).split(":")
            mounts.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return mounts


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    instructions = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                if "=" in pair:
                    key, value = pair.split("=", 1)
                    env[key] = value
    return env


def _env_refs(node: Any) -> set[str]:
    """Variables a Dagster config file reads through `{env: NAME}`."""
    if isinstance(node, dict):
        refs = {node["env"]} if isinstance(node.get("env"), str) else set()
        for value in node.values():
            refs |= _env_refs(value)
        return refs
    if isinstance(node, list):
        return set().union(*(_env_refs(item) for item in node)) if node else set()
    return set()


def _variables_read_by_code() -> set[str]:
    names = set()
    for path in (ROOT / "analytics_platform").rglob("*.py"):
        names |= set(ENV_VAR_IN_CODE.findall(path.read_text()))
    return names


def _pyproject_dagster() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]


def _postgres_init_sql(services: dict[str, Any]) -> str:
    scripts = [
        ROOT / source
        for source, target in _volume_mounts(_service(services, "postgres"))
        if target.startswith(POSTGRES_INIT_DIR)
    ]
    assert scripts, f"postgres mounts nothing into {POSTGRES_INIT_DIR}/"
    for script in scripts:
        assert script.is_file(), f"init script {script} mounted into postgres does not exist"
    return "\n".join(script.read_text() for script in scripts)


def _created_databases(init_sql: str) -> set[str]:
    found = re.findall(
        r"CREATE\s+DATABASE\s+\"?([A-Za-z_][A-Za-z0-9_]*)\"?", init_sql, re.IGNORECASE
    )
    return {name.lower() for name in found}


# --------------------------------------------------------------------------- services


def test_every_service_exists(services: dict[str, Any]) -> None:
    missing = [name for name in ALL_SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"


def test_store_images(services: dict[str, Any]) -> None:
    assert str(_service(services, "postgres").get("image", "")).startswith("postgres:16")
    assert str(_service(services, "clickhouse").get("image", "")).startswith(
        "clickhouse/clickhouse-server"
    )


def test_postgres_healthcheck_and_storage(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = _service(services, "postgres")
    check = postgres.get("healthcheck") or {}
    assert "pg_isready" in " ".join(map(str, check.get("test") or [])), (
        "postgres healthcheck should run pg_isready"
    )
    named = set(compose.get("volumes") or {})
    data_mounts = [
        src for src, dst in _volume_mounts(postgres) if dst == "/var/lib/postgresql/data"
    ]
    assert data_mounts and data_mounts[0] in named, (
        "postgres data (/var/lib/postgresql/data) should live on a named volume declared "
        f"under top-level `volumes`, got {data_mounts}"
    )


def test_clickhouse_port_healthcheck_and_storage(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    clickhouse = _service(services, "clickhouse")
    assert clickhouse.get("healthcheck", {}).get("test"), "clickhouse needs a healthcheck"
    assert any(str(port).split(":")[-1] == "8123" for port in clickhouse.get("ports") or []), (
        "clickhouse should publish its HTTP port 8123"
    )
    named = set(compose.get("volumes") or {})
    assert any(
        src in named for src, dst in _volume_mounts(clickhouse) if dst == "/var/lib/clickhouse"
    )


def test_webserver_publishes_ui_port(services: dict[str, Any]) -> None:
    webserver = _service(services, "webserver")
    port = _option(_command(webserver), "-p", "--port")
    assert port == "3000", f"webserver should listen on 3000, command says {port}"
    published = [str(p).split(":")[-1] for p in webserver.get("ports") or []]
    assert port in published, f"webserver port {port} is not published (ports: {published})"


# --------------------------------------------------------------------------- environment


def test_code_reads_the_documented_variables() -> None:
    """Guards the scan below: if it finds nothing, the env checks would prove nothing."""
    found = _variables_read_by_code()
    assert {"DATABASE_URL", "CLICKHOUSE_URL", "LANDING_DIR"} <= found, found


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_dagster_service_sets_every_variable_the_code_reads(
    services: dict[str, Any], name: str
) -> None:
    required = set(REQUIRED_ENV) | _variables_read_by_code()
    env = _environment(_service(services, name))
    missing = sorted(required - set(env))
    assert not missing, f"{name} does not set {missing}"
    empty = sorted(key for key in required if not env[key].strip())
    assert not empty, f"{name} sets these to an empty value: {empty}"


def test_dagster_services_share_one_environment(services: dict[str, Any]) -> None:
    """Runs start in the daemon/webserver but execute in the code server: settings must agree."""
    required = set(REQUIRED_ENV) | _variables_read_by_code()
    envs = {name: _environment(_service(services, name)) for name in DAGSTER_SERVICES}
    for key in sorted(required):
        values = {name: env.get(key) for name, env in envs.items()}
        assert len(set(values.values())) == 1, f"{key} differs between services: {values}"


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_landing_dir_is_bind_mounted(services: dict[str, Any], name: str) -> None:
    service = _service(services, name)
    landing = _environment(service).get("LANDING_DIR")
    sources = [src for src, dst in _volume_mounts(service) if dst == landing]
    assert sources, f"{name}: nothing is mounted at LANDING_DIR={landing}"
    assert sources[0].rstrip("/") in ("./data/landing", "data/landing"), sources


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_dagster_home_holds_the_image_dagster_yaml(services: dict[str, Any], name: str) -> None:
    compose_home = _environment(_service(services, name)).get("DAGSTER_HOME")
    image_home = _dockerfile_env().get("DAGSTER_HOME")
    assert compose_home == image_home, (
        f"{name} sets DAGSTER_HOME={compose_home} but the image puts dagster.yaml in {image_home}"
    )


# --------------------------------------------------------------------------- secrets


def _assert_interpolated_secret(where: str, value: str) -> None:
    match = INTERPOLATION.fullmatch(value.strip())
    assert match, f"{where} is a literal value, not a ${{...}} interpolation: {value!r}"
    assert match["op"] not in (":-", "-", ":+", "+"), (
        f"{where} has a default value committed to the file: {value!r}"
    )


@pytest.mark.parametrize("name", ALL_SERVICES)
def test_no_literal_secrets(services: dict[str, Any], name: str) -> None:
    for key, value in _environment(_service(services, name)).items():
        if SECRET_KEY.search(key):
            _assert_interpolated_secret(f"{name}.{key}", value)
        if "://" in value:
            password = _split_url(value)["password"]
            if password:
                _assert_interpolated_secret(f"password in {name}.{key}", password)


def test_required_secrets_fail_fast_when_unset(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    for variable in ("POSTGRES_PASSWORD", "CLICKHOUSE_PASSWORD"):
        assert re.search(r"\$\{" + variable + r":?\?", text), (
            f"{variable} should be required with ${{{variable}:?message}} somewhere, so that "
            "compose stops with a clear error instead of starting with an empty password"
        )


def test_store_urls_match_the_store_services(services: dict[str, Any]) -> None:
    env = _environment(_service(services, "code"))
    postgres_env = _environment(_service(services, "postgres"))
    clickhouse_env = _environment(_service(services, "clickhouse"))

    def variable(value: str) -> str | None:
        match = INTERPOLATION.fullmatch(value)
        return match["name"] if match else None

    for key in ("DATABASE_URL", "DAGSTER_POSTGRES_URL"):
        url = _split_url(env[key])
        assert url["scheme"].startswith("postgres"), (key, url)
        assert (url["host"], url["port"] or "5432") == ("postgres", "5432"), (key, url)
        assert _render(url["user"]) == _render(postgres_env.get("POSTGRES_USER", "postgres")), (
            key,
            url,
        )
        assert variable(url["password"]) == variable(postgres_env["POSTGRES_PASSWORD"]), (key, url)

    url = _split_url(env["CLICKHOUSE_URL"])
    assert url["scheme"] in ("http", "https"), url
    assert (url["host"], url["port"]) == ("clickhouse", "8123"), url
    assert _render(url["user"]) == _render(clickhouse_env.get("CLICKHOUSE_USER", "default")), url
    assert variable(url["password"]) == variable(clickhouse_env["CLICKHOUSE_PASSWORD"]), url


def test_postgres_init_creates_the_databases_in_use(services: dict[str, Any]) -> None:
    created = _created_databases(_postgres_init_sql(services))
    env = _environment(_service(services, "code"))
    for key in ("DATABASE_URL", "DAGSTER_POSTGRES_URL"):
        database = _split_url(env[key])["path"].lstrip("/")
        assert database.lower() in created, (
            f"{key} uses database {database!r}, which the postgres init script does not create "
            f"(it creates {sorted(created)})"
        )


# --------------------------------------------------------------------------- startup order


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_depends_on_healthy_stores(services: dict[str, Any], name: str) -> None:
    depends_on = _service(services, name).get("depends_on")
    assert isinstance(depends_on, dict), (
        f"{name}.depends_on should be a mapping with conditions, got {depends_on!r}"
    )
    for store in STORES:
        assert store in depends_on, f"{name} does not wait for {store}"
    for dependency, spec in depends_on.items():
        condition = (spec or {}).get("condition")
        assert condition == "service_healthy", f"{name} -> {dependency}: condition is {condition!r}"
        healthcheck = _service(services, dependency).get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable"), (
            f"{name} waits for {dependency} to be healthy, but {dependency} has no healthcheck"
        )


# --------------------------------------------------------------------------- code location


def test_code_server_module_exists(services: dict[str, Any]) -> None:
    args = _command(_service(services, "code"))
    assert args[:3] == ["dagster", "code-server", "start"], args
    module = _option(args, "-m", "--module-name")
    assert module, f"code server command names no module: {args}"
    assert re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module), module
    relative = Path(*module.split("."))
    candidates = [ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"]
    assert any(path.is_file() for path in candidates), f"module {module} is not in the repo"
    assert module == _pyproject_dagster()["module_name"]


def test_workspace_points_at_the_code_service(services: dict[str, Any]) -> None:
    workspace = _load_yaml(DOCKER_WORKSPACE)
    servers = [entry["grpc_server"] for entry in workspace["load_from"] if "grpc_server" in entry]
    assert len(servers) == 1, f"expected one grpc_server in workspace.docker.yaml, got {servers}"
    server = servers[0]

    args = _command(_service(services, "code"))
    assert _option(args, "-h", "--host") == "0.0.0.0", (
        "the code server must listen on 0.0.0.0 to be reachable from other containers"
    )
    assert server["host"] == "code" and "code" in services, server
    assert str(server["port"]) == _option(args, "-p", "--port"), (server, args)
    assert server["location_name"] == _pyproject_dagster()["code_location_name"]


@pytest.mark.parametrize("name", ["webserver", "daemon"])
def test_webserver_and_daemon_load_the_docker_workspace(
    services: dict[str, Any], name: str
) -> None:
    args = _command(_service(services, name))
    expected = {"webserver": ["dagster-webserver"], "daemon": ["dagster-daemon", "run"]}[name]
    assert args[: len(expected)] == expected, args
    workspace = _option(args, "-w", "--workspace")
    assert workspace == DOCKER_WORKSPACE.name, f"{name} loads {workspace!r}"


def test_dagster_services_run_the_built_image(services: dict[str, Any]) -> None:
    code = _service(services, "code")
    build = code.get("build")
    assert build, "the code service should build the image"
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE.resolve()
    for name in ("webserver", "daemon"):
        assert _service(services, name).get("image") == code.get("image"), (
            f"{name} should run the image the code service builds ({code.get('image')})"
        )


# --------------------------------------------------------------------------- collector


def test_collector_serves_on_its_published_port_from_the_built_image(
    services: dict[str, Any],
) -> None:
    collector = _service(services, COLLECTOR)
    assert collector.get("image") == _service(services, "code").get("image")
    args = _command(collector)
    assert args[:2] == ["analytics-platform", "collector"], args
    assert _option(args, "--host") == "0.0.0.0", "reachable from outside its container"
    port = _option(args, "--port")
    published = [str(p).split(":")[-1] for p in collector.get("ports") or []]
    assert port and port in published, f"collector port {port} is not published ({published})"
    check = " ".join(map(str, (collector.get("healthcheck") or {}).get("test") or []))
    assert f"127.0.0.1:{port}/health" in check, f"the healthcheck should ask /health: {check}"


def test_collector_writes_where_the_code_server_reads(services: dict[str, Any]) -> None:
    collector, code = _service(services, COLLECTOR), _service(services, "code")
    env, code_env = _environment(collector), _environment(code)
    # The same warehouse (keys), start date (which day folders can run) and landing folder.
    for key in ("DATABASE_URL", "PLATFORM_START_DATE", "LANDING_DIR"):
        assert env.get(key) == code_env.get(key), (key, env.get(key), code_env.get(key))
    mounted = {dst: src for src, dst in _volume_mounts(collector)}
    code_mounted = {dst: src for src, dst in _volume_mounts(code)}
    assert mounted.get(env["LANDING_DIR"]) == code_mounted[code_env["LANDING_DIR"]]
    depends_on = collector.get("depends_on") or {}
    assert depends_on.get("postgres", {}).get("condition") == "service_healthy"


def test_collector_settings_in_compose_are_ones_the_collector_reads(
    services: dict[str, Any],
) -> None:
    from analytics_platform.settings import COLLECTOR_DEFAULTS, collector_settings

    env = _environment(_service(services, COLLECTOR))
    named = {key for key in env if key.startswith("COLLECTOR_")}
    assert named and named <= set(COLLECTOR_DEFAULTS), named - set(COLLECTOR_DEFAULTS)
    collector_settings({key: _render(env[key]) for key in named})  # defaults are accepted


def test_read_api_serves_on_its_published_port_from_the_code_servers_stores(
    services: dict[str, Any],
) -> None:
    from analytics_platform.settings import api_clickhouse_wait_seconds

    api, code = _service(services, API_SERVICE), _service(services, "code")
    assert api.get("image") == code.get("image")
    args = _command(api)
    assert args[:2] == ["analytics-platform", "api"], args
    assert _option(args, "--host") == "0.0.0.0", "reachable from outside its container"
    port = _option(args, "--port")
    published = [str(p).split(":")[-1] for p in api.get("ports") or []]
    assert port and port in published, f"read API port {port} is not published ({published})"
    check = " ".join(map(str, (api.get("healthcheck") or {}).get("test") or []))
    assert f"127.0.0.1:{port}/" in check, f"the healthcheck should ask the API's port: {check}"
    env, code_env = _environment(api), _environment(code)
    # Keys live in the warehouse; the served tables in the code server's ClickHouse.
    for key in ("DATABASE_URL", "CLICKHOUSE_URL"):
        assert env.get(key) == code_env.get(key), (key, env.get(key), code_env.get(key))
    api_clickhouse_wait_seconds(
        {"API_CLICKHOUSE_WAIT_SECONDS": _render(env["API_CLICKHOUSE_WAIT_SECONDS"])}
    )
    for store in STORES:
        assert (api.get("depends_on") or {}).get(store, {}).get("condition") == "service_healthy"


# --------------------------------------------------------------------------- image


# --------------------------------------------------------------------------- monitoring


def _mounted_file(service: dict[str, Any], path_inside: str) -> Path:
    """The host file behind `path_inside` in a service, through its bind mounts."""
    for source, target in _volume_mounts(service):
        if source.startswith(".") and (
            path_inside == target or path_inside.startswith(target + "/")
        ):
            return ROOT / source / path_inside[len(target) :].lstrip("/")
    raise AssertionError(f"{path_inside} is not bind-mounted from the repository: {service}")


def test_prometheus_scrapes_the_collector_and_api_and_loads_the_alerts(
    services: dict[str, Any],
) -> None:
    prometheus = _service(services, "prometheus")
    config_path = _option(_command(prometheus), "--config.file")
    assert config_path, "prometheus should be started with --config.file"
    config = _load_yaml(_mounted_file(prometheus, config_path))
    targets = {
        job["job_name"]: [t for c in job.get("static_configs", []) for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    collector_port = _option(_command(_service(services, COLLECTOR)), "--port")
    assert targets.get(COLLECTOR) == [f"{COLLECTOR}:{collector_port}"], targets
    assert targets.get(API_SERVICE) == [f"{API_SERVICE}:{API_PORT}"], targets
    assert all(j.get("metrics_path", "/metrics") == "/metrics" for j in config["scrape_configs"])
    rules = [_mounted_file(prometheus, path) for path in config["rule_files"]]
    assert rules and all(r.is_file() for r in rules), rules
    for rule_file in rules:
        for group in _load_yaml(rule_file)["groups"]:
            for rule in group["rules"]:
                assert rule.get("alert") and rule.get("expr"), rule


def test_grafana_provisions_the_prometheus_datasource_and_dashboard(
    services: dict[str, Any],
) -> None:
    import json

    grafana = _service(services, "grafana")
    provisioning = _mounted_file(grafana, "/etc/grafana/provisioning")
    datasources = [
        d
        for f in (provisioning / "datasources").glob("*.yml")
        for d in _load_yaml(f)["datasources"]
    ]
    (prometheus,) = [d for d in datasources if d["type"] == "prometheus"]
    port = _service(services, "prometheus")["ports"][0].split(":")[-1]
    assert prometheus["url"] == f"http://prometheus:{port}"
    providers = [
        p for f in (provisioning / "dashboards").glob("*.yml") for p in _load_yaml(f)["providers"]
    ]
    folders = [_mounted_file(grafana, p["options"]["path"]) for p in providers]
    dashboards = [json.loads(f.read_text()) for folder in folders for f in folder.glob("*.json")]
    assert dashboards, f"no dashboard JSON in {folders}"
    for dashboard in dashboards:
        for panel in dashboard["panels"]:
            for target in [panel, *panel["targets"]]:
                assert target["datasource"]["uid"] == prometheus["uid"], panel["title"]
    env = _environment(grafana)
    assert INTERPOLATION.fullmatch(env["GF_SECURITY_ADMIN_PASSWORD"]), "no default password"


def test_dockerfile_installs_and_prepares() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim"), instructions[0]
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    install = next(
        (i for i, args in enumerate(runs) if re.search(r"pip install \.(\s|$)", args)), None
    )
    prepare = next((i for i, args in enumerate(runs) if "analytics-platform prepare" in args), None)
    assert install is not None, "the Dockerfile does not `pip install .`"
    assert prepare is not None, "the Dockerfile does not run `analytics-platform prepare`"
    assert install < prepare, "`analytics-platform prepare` must run after `pip install .`"


def test_image_finds_the_dbt_project() -> None:
    """A non-editable install puts the package in site-packages, away from dbt_project/."""
    instructions = _dockerfile_instructions()
    workdir = next(args for keyword, args in reversed(instructions) if keyword == "WORKDIR")
    copies_repo = any(
        keyword == "COPY" and args.split()[0] == "." for keyword, args in instructions
    )
    assert copies_repo, "the Dockerfile should copy the repository (COPY . .)"
    project_dir = _dockerfile_env().get("DBT_PROJECT_DIR")
    assert project_dir, "set ENV DBT_PROJECT_DIR: the installed package cannot find dbt_project/"
    assert Path(project_dir) == Path(workdir) / "dbt_project", (project_dir, workdir)


def test_dockerfile_puts_dagster_yaml_in_dagster_home() -> None:
    home = _dockerfile_env().get("DAGSTER_HOME")
    assert home, "the Dockerfile sets no DAGSTER_HOME"
    copies = [
        args.split()
        for keyword, args in _dockerfile_instructions()
        if keyword == "COPY" and "dagster.yaml" in args.split()[:-1]
    ]
    assert copies, "the Dockerfile does not copy dagster.yaml"
    destination = copies[-1][-1].replace("${DAGSTER_HOME}", home).replace("$DAGSTER_HOME", home)
    assert destination.rstrip("/") in (home, f"{home}/dagster.yaml"), destination


def test_dockerignore_keeps_local_state_out_but_not_sources() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = [
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for excluded in (".venv", ".platform", "data", "dbt_project/target", ".env"):
        assert excluded in patterns, f".dockerignore should exclude {excluded}"
    assert any("__pycache__" in pattern for pattern in patterns)
    needed = ("analytics_platform", "dbt_project", "pyproject.toml", "README.md", "dagster.yaml")
    for path in (*needed, DOCKER_WORKSPACE.name):
        hits = [p for p in patterns if not p.startswith("!") and fnmatch.fnmatch(path, p)]
        assert not hits, f".dockerignore excludes {path}, which the image needs ({hits})"


# --------------------------------------------------------------------------- dagster.yaml


@pytest.fixture(scope="module")
def dagster_yaml() -> dict[str, Any]:
    if not DAGSTER_YAML.is_file():
        pytest.skip("dagster.yaml does not exist yet (it is written separately from these files)")
    return yaml.safe_load(DAGSTER_YAML.read_text())


@pytest.mark.parametrize(
    ("part", "module"),
    [
        ("run_storage", "dagster_postgres.run_storage"),
        ("event_log_storage", "analytics_platform.instance_storage"),
        ("schedule_storage", "dagster_postgres.schedule_storage"),
    ],
)
def test_dagster_yaml_uses_postgres_storage(
    dagster_yaml: dict[str, Any], part: str, module: str
) -> None:
    storage = dagster_yaml.get(part) or {}
    assert storage.get("module") == module, f"dagster.yaml's {part} is {storage}"
    assert storage.get("config", {}).get("postgres_url") == {"env": "DAGSTER_POSTGRES_URL"}, (
        f"dagster.yaml's {part} should read Postgres from DAGSTER_POSTGRES_URL, got {storage}"
    )


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_every_variable_dagster_yaml_reads_is_set(
    dagster_yaml: dict[str, Any], services: dict[str, Any], name: str
) -> None:
    refs = _env_refs(dagster_yaml)
    assert "DAGSTER_POSTGRES_URL" in refs, refs
    missing = sorted(refs - set(_environment(_service(services, name))))
    assert not missing, f"dagster.yaml reads {missing}, which {name} does not set"
