from tenantflow.portal_api.main import main

main()
