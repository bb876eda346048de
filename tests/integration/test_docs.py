"""The README's configuration reference names every key the loader accepts,
and the quickstart's two commands exist and are what .ci/run calls."""
import os
import re
import unittest

from pgtest import SRC


def read(*path):
    with open(os.path.join(SRC, *path)) as f:
        return f.read()


class Docs(unittest.TestCase):
    def test_every_config_key_documented(self):
        src = read("conf", "config.c")
        keys = set(re.findall(r'\{"([a-z_]+)", F_', src)) | set(re.findall(r'\{"([a-z_]+)", load_', src))
        self.assertGreater(len(keys), 60)
        readme = read("README.md")
        reference = readme[readme.index("## Configuration"):readme.index("## Tests")]
        # a key counts as documented when it is a whole word inside a `code` span
        missing = sorted(k for k in keys if not re.search(r"`[^`\n]*\b%s\b[^`\n]*`" % re.escape(k), reference))
        self.assertEqual(missing, [])

    def test_quickstart_commands(self):
        readme = read("README.md")
        block = re.search(r"## Quickstart.*?```sh\n(.*?)```", readme, re.S).group(1)
        cmds = [line.split()[0] for line in block.strip().splitlines()]
        self.assertEqual(cmds, ["tests/run-demo", "tests/run-all"])
        for c in cmds:
            self.assertTrue(os.access(os.path.join(SRC, c), os.X_OK), c)
        self.assertIn("tests/run-all", read(".ci", "run"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
