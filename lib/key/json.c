/* placeholder */ typedef int mc__placeholder_json;
