from tenantflow.intune_writer.main import main

main()
