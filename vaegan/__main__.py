from vaegan.cli import main

main()
