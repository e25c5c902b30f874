package xo.bench;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Minimal "--name value" / "--flag" parser; unknown names are an error. */
final class Args {
    private final Map<String, String> values = new HashMap<>();
    private final List<String> props = new ArrayList<>();
    private final List<String> known;

    private static final List<String> FLAGS = List.of("fsync", "keep-topics");

    Args(String[] argv, int from, List<String> known) {
        this.known = known;
        for (int i = from; i < argv.length; i++) {
            String a = argv[i];
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument: " + a);
            }
            String name = a.substring(2);
            String value;
            int eq = name.indexOf('=');
            if (eq >= 0) {
                value = name.substring(eq + 1);
                name = name.substring(0, eq);
            } else if (FLAGS.contains(name)) {
                value = "true";
            } else {
                if (i + 1 >= argv.length) {
                    throw new IllegalArgumentException("--" + name + " needs a value");
                }
                value = argv[++i];
            }
            if (name.equals("prop")) {
                props.add(value);
                continue;
            }
            if (!known.contains(name) && !FLAGS.contains(name)) {
                throw new IllegalArgumentException("unknown option --" + name + " (known: " + known + ")");
            }
            values.put(name, value);
        }
    }

    String str(String name, String dflt) {
        return values.getOrDefault(name, dflt);
    }

    long num(String name, long dflt) {
        String v = values.get(name);
        if (v == null) {
            return dflt;
        }
        try {
            return Long.parseLong(v.replace("_", ""));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " wants an integer, got " + v);
        }
    }

    double dbl(String name, double dflt) {
        String v = values.get(name);
        return v == null ? dflt : Double.parseDouble(v);
    }

    boolean flag(String name) {
        return Boolean.parseBoolean(values.getOrDefault(name, "false"));
    }

    boolean has(String name) {
        return values.containsKey(name);
    }

    /** Extra client properties given as --prop key=value. */
    List<String> props() {
        return props;
    }
}
