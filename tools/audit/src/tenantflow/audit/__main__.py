import sys

from tenantflow.audit.cli import main

sys.exit(main())
