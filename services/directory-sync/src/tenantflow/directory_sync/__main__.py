from tenantflow.directory_sync.main import main

main()
