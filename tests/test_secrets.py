"""Secret redaction: planted secrets vanish, ordinary code stays byte-identical, line numbers hold."""

from __future__ import annotations

import pytest

from repolm.indexer.secrets import REDACTION_MARKER, redact, redact_split

# One planted example per kind (format-valid, not real). Key: (line template, secret substring).
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0Ijox"
    "NTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AZURE_KEY = "Zm9vYmFy" * 11
PLANTED = {
    "aws access key id": ('aws_access_key_id = "{}"', "AKIAIOSFODNN7EXAMPLE"),
    "aws secret key": ('aws_secret_access_key = "{}"', "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    "azure storage key": (
        'conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={}"',
        AZURE_KEY,
    ),
    "google api key": ('GOOGLE = "{}"', "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    "github token": ('GH = "{}"', "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"),
    "github fine-grained pat": ('GH = "{}"', "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv"),
    "gitlab token": ('GL = "{}"', "glpat-xY7zQ2wR9tL4mN8vB3cK"),
    "slack token": ('SLACK = "{}"', "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    "stripe key": ('STRIPE = "{}"', "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    "openai project key": ('client = OpenAI(api_key="{}")', "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
    "openai legacy key": ('OPENAI = "{}"', "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"),
    "generic api key": ('api_key = "{}"', "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
    "high-entropy token": ('session_token = "{}"', "Zx8QpL2mN7vR4tY9wK3sJ6hG1fD5aB0c"),
    "low-entropy password": ('db_password = "{}"', "Hunter2Hunter2"),
    "jwt": ('JWT = "{}"', JWT),
    "basic auth url": ('DB = "postgres://admin:{}@db.example.com:5432/app"', "s3cr3tP4ss"),
    "bearer header": ('headers = {{"Authorization": "Bearer {}"}}', "abcDEF123ghiJKL456mnoPQR"),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_secret_is_redacted(name: str) -> None:
    template, secret = PLANTED[name]
    text = f"import os\n\n{template.format(secret)}\nprint('done')\n"
    out, found = redact(text, "app/config.py")
    assert secret not in out
    assert REDACTION_MARKER in out
    assert out.count("\n") == text.count("\n")
    assert [r.line for r in found] == [3]
    # Only the value goes: the name before it and the lines around it are untouched.
    assert out.splitlines()[2].startswith(template.split("{")[0].rstrip("'\""))
    assert out.splitlines()[0] == "import os" and out.splitlines()[3] == "print('done')"


def test_redacting_redacted_text_changes_nothing() -> None:
    """Evaluation reads redacted files and the completion core redacts them again: same prompt."""
    text = "\n".join(template.format(secret) for template, secret in PLANTED.values()) + "\n"
    once, _ = redact(text, "app/config.py")
    assert redact(once, "app/config.py")[0] == once


def test_secret_repeated_on_an_unprobed_line_is_also_removed() -> None:
    text = 'db_password = "Hunter2Hunter2"\n# the old password Hunter2Hunter2 still works\n'
    out, found = redact(text, "a.py")
    assert "Hunter2Hunter2" not in out
    assert [r.line for r in found] == [1, 2]


@pytest.mark.parametrize(
    "line",
    [
        'password = request.POST["password"]',
        "token = get_token()",
        "secret_key = settings.SECRET_KEY",
        'password = "%s"',
        'query = {"password": "%(password)s"}',
        'label = "Enter your password"',
        'PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]',
        'password_field = "password"',
        "for key, value in sorted(d.items(), key=lambda kv: kv[0]):",
        'url = "https://example.com/path?x=1"',
        'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")',
        "from sklearn import base  # sk-learn-compatible-estimator",
        'API_KEY = os.environ["API_KEY"]',
        'headers = {"Authorization": f"Bearer {token}"}',
    ],
)
def test_ordinary_code_is_untouched(line: str) -> None:
    text = f"def f(request):\n    {line}\n"
    assert redact(text, "views.py") == (text, [])


def test_multi_line_private_key_keeps_begin_end_and_line_count() -> None:
    body = [
        "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z2Ek5D3XqWjx8Uu5c9Pz6wFq",
        "kYbJj0sL1mNoPqRsTuVwXyZa2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R9s0T1u",
        "Zm9vYmFyYmF6",
    ]
    begin, end = "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
    text = "\n".join(["KEY = '''", begin, *body, end, "'''", "x = 1"])
    out, found = redact(text, "keys.py")
    lines = out.split("\n")
    assert len(lines) == len(text.split("\n"))
    assert lines[1] == begin and lines[5] == end
    assert lines[2:5] == [REDACTION_MARKER] * 3
    assert lines[7] == "x = 1"
    assert all(part not in out for part in body)
    assert {r.secret_type for r in found} == {"Private Key"}


def test_truncated_private_key_redacts_only_key_material() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n  b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"
    text = key + "def after():\n    pass\n"
    out, _ = redact(text, "id_ed25519")
    assert out.split("\n")[1:4] == [f"  {REDACTION_MARKER}", "def after():", "    pass"]


def test_private_key_inside_string_literals_keeps_the_code_parseable() -> None:
    """A key pasted into code (a test fixture, a template): the key goes, the quotes around it stay."""
    import ast

    body = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi"
    source = (
        "KEY = (\n"
        '    "-----BEGIN RSA PRIVATE KEY-----\\n"\n'
        f'    "{body}\\n"\n'
        '    "-----END RSA PRIVATE KEY-----\\n"\n'
        ")\n\n\ndef after():\n    return KEY\n"
    )
    redacted, found = redact(source, "fixtures.py")
    assert found and body not in redacted and REDACTION_MARKER in redacted
    tree = ast.parse(redacted)  # still Python: definitions after the key are not lost
    assert [node.name for node in tree.body if isinstance(node, ast.FunctionDef)] == ["after"]


def test_private_key_on_one_line_as_in_service_account_json() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    key = f"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----\\n"
    text = f'{{"type": "service_account",\n "private_key": "{key}"}}\n'
    out, found = redact(text, "gcp-sa.json")
    assert body not in out and "-----END PRIVATE KEY-----" in out
    assert [r.line for r in found] == [2]


def test_env_file_values_are_redacted_but_flags_and_references_stay() -> None:
    text = (
        "# local settings\nDEBUG=true\nPORT=8000\nDATABASE_PASSWORD=hunter2secret\n"
        "STRIPE='rk_abc123xyz'\nEMPTY=\nHOME_DIR=${HOME}\n"
    )
    out, found = redact(text, "deploy/.env.production")
    assert out.split("\n") == [
        "# local settings",
        "DEBUG=true",
        "PORT=8000",
        f"DATABASE_PASSWORD={REDACTION_MARKER}",
        f"STRIPE='{REDACTION_MARKER}'",
        "EMPTY=",
        "HOME_DIR=${HOME}",
        "",
    ]
    assert [r.line for r in found] == [4, 5]


@pytest.mark.parametrize("path", [".env", "config/.env.local", "prod.env"])
def test_env_file_names(path: str) -> None:
    out, _ = redact("SERVICE=x9y8z7w6\n", path)
    assert "x9y8z7w6" not in out


def test_secret_assignments_in_scripts_and_configs() -> None:
    script = "export DB_PASSWORD=Tr0ub4dor3x\npython train.py --tokenizer=bert-base --password=PASSWORD\n"
    out, found = redact(script, "deploy.sh")
    assert "Tr0ub4dor3x" not in out
    assert "--tokenizer=bert-base --password=PASSWORD" in out  # a flag and a placeholder name
    assert [r.line for r in found] == [1]

    yaml = "database:\n  password: s3cr3t-yaml  # prod\n  user: admin\n"
    out, _ = redact(yaml, "settings.yaml")
    assert out == f"database:\n  password: {REDACTION_MARKER}  # prod\n  user: admin\n"


def test_empty_and_binary_looking_input() -> None:
    assert redact("", "a.py") == ("", [])
    text = "\x00\xff\ufffd key=\n" * 3
    assert redact(text, "blob.txt") == (text, [])


def test_specific_detector_names_the_secret() -> None:
    _, found = redact('GITHUB_TOKEN = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"\n', "settings.py")
    assert [r.secret_type for r in found] == ["GitHub Token"]  # not the generic entropy finding


# -- credentials in URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "line", "password"),
    [
        ("app/settings.py", 'DB_URL = "postgresql://admin:S3cr3t!Pw0rd@db.internal/app"', "S3cr3t!Pw0rd"),
        ("app/settings.py", 'DB = "mysql://app:pa$$w0rd;x@db.internal:3306/app"', "pa$$w0rd;x"),
        ("app/settings.py", 'CACHE = "redis://:Xk2&mP9=qL@cache.internal:6379/0"', "Xk2&mP9=qL"),
        ("app/settings.py", 'AMQP = "amqp://guest:gu3st(x)*+,@mq.internal//"', "gu3st(x)*+,"),
        ("app/db.js", "const url = `mongodb://root:S3cr3t@42@mongo.internal/db`;", "S3cr3t@42"),
        ("app/db.py", "# connect with postgresql://admin:S3cr3t!Passw0rd@db.internal/app", "S3cr3t!Passw0rd"),
        ("docs/setup.md", "Run `psql postgresql://admin:S3cr3t!Pw0rd@db.internal/app`.", "S3cr3t!Pw0rd"),
        ("deploy/values.yaml", "url: https://deploy:hunter2!@registry.internal/v2", "hunter2!"),
    ],
)
def test_url_credentials_lose_their_password_and_keep_scheme_user_and_host(
    path: str, line: str, password: str
) -> None:
    text = f"import os\n{line}\nprint('done')\n"
    out, found = redact(text, path)
    assert password not in out
    lines = out.split("\n")
    assert lines[1] == line.replace(password, REDACTION_MARKER)  # scheme, user and host stay readable
    assert lines[0] == "import os" and lines[2] == "print('done')"
    assert [r.line for r in found] == [2]


@pytest.mark.parametrize(
    "line",
    [
        'REPO = "ssh://git@github.com/org/repo.git"',  # a user, no password
        'URL = "https://admin@example.com/path"',
        'URL = "http://localhost:8080/path?next=/login"',
        'URL = "http://localhost:8080?email=someone@example.com"',  # a port and a query, no credentials
        'DSN = "postgresql://user:${PASSWORD}@db.internal/app"',
        'DSN = "postgresql://{user}:{password}@{host}/app"',
        'DSN = f"postgresql://{user}:{password}@{host}/app"',
        'DSN = "postgresql://%(user)s:%(password)s@%(host)s/app"',
        'DSN = "postgresql://<user>:<password>@<host>/app"',
        'DSN = "postgresql://user:****@db.internal/app"',
        'DSN = "postgresql://$USER:$PASSWORD@db.internal/app"',
        "const url = new URL('https://abc:xyz@example.com');",  # documentation's examples
        "// Prints https://a:b@example.com/",
    ],
)
def test_url_without_a_real_password_is_untouched(line: str) -> None:
    text = f"def f():\n    {line}\n"
    assert redact(text, "settings.py") == (text, [])


# -- AWS secret keys beside their key id -----------------------------------------------------------

AWS_ID, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    "text",
    [
        f"# {AWS_ID} {AWS_SECRET}\nx = 1\n",
        f"# key id: {AWS_ID}\n# secret: {AWS_SECRET}\nx = 1\n",
        f"# secret: {AWS_SECRET}\n# key id: {AWS_ID}\nx = 1\n",
        f'client = boto3.client("s3", "{AWS_ID}", "{AWS_SECRET}")\nx = 1\n',
        f"keys = [\n    ('ASIAY34FZKBOKMUTVV7A', '{AWS_SECRET}'),\n]\n",
    ],
)
def test_aws_secret_beside_its_key_id_is_redacted(text: str) -> None:
    out, found = redact(text, "app/aws.py")
    assert AWS_SECRET not in out and AWS_ID not in out
    assert out.count("\n") == text.count("\n")
    assert {r.secret_type for r in found} == {"AWS Access Key"}


def test_forty_character_tokens_that_are_no_aws_secret_stay() -> None:
    # A git commit (hex, one case) beside a key id, and a random-looking token far from any key id.
    sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    text = f"# {AWS_ID} added in {sha}\n\n\n\nCHECKSUM = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2Fy'\n"
    out, _ = redact(text, "notes.py")
    assert sha in out and "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2Fy" in out


# -- a cursor in a redacted buffer -----------------------------------------------------------------

PASSWORD = "Tr0ub4dor&3horse"
M = REDACTION_MARKER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A secret on an earlier line: the cursor's line is untouched.
        (f'DB_PASSWORD = "{PASSWORD}"\nx = conn|ect()\n', (f'DB_PASSWORD = "{M}"\nx = conn', "ect()\n")),
        # On the cursor's line, before the cursor and after it.
        (f'connect(password="{PASSWORD}", t|)\n', (f'connect(password="{M}", t', ")\n")),
        (f'con|nect(password="{PASSWORD}")\n', ("con", f'nect(password="{M}")\n')),
        # Right before and right after the secret, and inside it: the marker goes whole to one side.
        (f'password = "|{PASSWORD}"\n', ('password = "', f'{M}"\n')),
        (f'password = "{PASSWORD}|"\n', (f'password = "{M}', '"\n')),
        ('password = "Tr0ub4|dor&3horse"\n', (f'password = "{M}', '"\n')),
        # Two secrets on the line, the cursor between them; CRLF line ends.
        (
            f'URL = "redis://:{PASSWORD}@cache/0" | # was postgresql://admin:S3cr3t!x@db/app\r\nx = 1\r\n',
            (f'URL = "redis://:{M}@cache/0" ', f" # was postgresql://admin:{M}@db/app\r\nx = 1\r\n"),
        ),
        # Nothing secret: the text is cut as it is.
        ("x = 1\ny = |2\n", ("x = 1\ny = ", "2\n")),
    ],
)
def test_redact_split_keeps_the_cursor_in_place(text: str, expected: tuple[str, str]) -> None:
    offset = text.index("|")
    assert redact_split(text.replace("|", "", 1), "app/settings.py", offset) == expected
