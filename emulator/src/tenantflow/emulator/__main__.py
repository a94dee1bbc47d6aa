from tenantflow.emulator.main import main

main()
