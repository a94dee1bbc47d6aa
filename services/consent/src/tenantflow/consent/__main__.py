from tenantflow.consent.main import main

main()
