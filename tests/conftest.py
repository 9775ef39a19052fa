pytest_plugins = ["pytest_jupyter.jupyter_server", "ecode_jupyter.pytest_plugin"]
