# Project kernels on Jupyter Enterprise Gateway (a cluster's kernels), for a server (or a hub
# user's server) with the ecode extension:
#   jupyter lab --config examples/enterprise-gateway/jupyter_server_config.py
#
# The server's kernel manager becomes the gateway's: Lab's kernel menu lists the gateway's
# kernelspecs, and the agent's execute_code starts the project's kernel there, as the kernel
# named "ecode-python" (kernels/ecode-python/ beside this file: install it on the gateway),
# with KERNEL_ECODE_PROJECT (the project id), KERNEL_USERNAME (the ecode user) and
# KERNEL_WORKING_DIR (the project's folder, for gateways that mirror working folders) passed
# along. tests/kernels/test_enterprise_gateway.py runs this against a real gateway on
# loopback.
#
# What does not travel: the project's secrets and DATABASE_URL (only KERNEL_* variables
# cross to the gateway), and the ecode sandbox (the gateway's process proxy decides where the
# kernel runs: a Kubernetes pod, a YARN container; see kubernetes/ beside this file).
import os

c = get_config()  # noqa: F821
c.GatewayClient.url = os.environ.get("JUPYTER_GATEWAY_URL", "http://127.0.0.1:8888")
# A kernel pod can take a while to be scheduled and pull its image.
c.GatewayClient.request_timeout = 120.0
