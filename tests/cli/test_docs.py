from pathlib import Path

from srs.cli.docs import config_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting_with_its_default() -> None:
    text = README.read_text()
    block = text.split("<!-- config:begin -->\n", 1)[1].split("<!-- config:end -->", 1)[0]
    assert block == config_reference(), "run: python -m srs.cli.docs and paste into README.md"
    assert "| `sip.port` | `SRS_SIP_PORT` | `5060` |" in block
    assert "| `auth.header` | `SRS_AUTH_HEADER` | `X-Auth-Token` |" in block


def test_readme_shows_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make serve" in text and "make test" in text
