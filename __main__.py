from deepprob.cli import console_main

console_main()
