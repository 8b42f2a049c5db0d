from falco_deploy.cli import main

main()
