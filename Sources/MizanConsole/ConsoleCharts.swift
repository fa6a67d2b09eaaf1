import Foundation
import MizanGateway

/// Small inline SVG charts (no script, no stylesheet of their own: the console's CSS colours
/// them by class). Each point carries a `<title>`, so a pointer or a screen reader gets the
/// figure behind a bar.
enum ConsoleCharts {
    /// One bar of a bar chart: its height, an optional part drawn in the warning colour
    /// (failures within requests), and its tooltip.
    struct Bar {
        var value: Double
        var highlighted: Double = 0
        var title: String
    }

    /// One line of a line chart: a value per point (`nil`: no data there) and a class.
    struct Line {
        var values: [Double?]
        var secondary = false
    }

    /// A bar chart scaled to its largest bar.
    static func bars(_ bars: [Bar], label: String) -> HTML {
        let width = max(1, bars.count) * 10
        let peak = bars.map(\.value).max() ?? 0
        let scale = peak > 0 ? 96 / peak : 0
        var shapes: [HTML] = []
        for (index, bar) in bars.enumerated() where bar.value > 0 {
            let height = max(1.5, bar.value * scale)
            let x = index * 10 + 1
            shapes.append(
                "<rect class=\"bar\" x=\"\(x)\" y=\"\(format(100 - height))\" width=\"8\" height=\"\(format(height))\"><title>\(bar.title)</title></rect>"
            )
            if bar.highlighted > 0 {
                let part = max(1.5, bar.highlighted * scale)
                shapes.append(
                    "<rect class=\"bar bad\" x=\"\(x)\" y=\"\(format(100 - part))\" width=\"8\" height=\"\(format(part))\"><title>\(bar.title)</title></rect>"
                )
            }
        }
        return """
            <svg viewBox="0 0 \(width) 100" preserveAspectRatio="none" role="img" aria-label="\(label)">\
            <line class="axis" x1="0" y1="100" x2="\(width)" y2="100"></line>\(shapes)</svg>
            """
    }

    /// Lines over the same points, scaled together to their largest value.
    static func lines(_ lines: [Line], titles: [String], label: String) -> HTML {
        let count = lines.map(\.values.count).max() ?? 0
        let width = max(1, count) * 10
        let peak = lines.flatMap { $0.values.compactMap { $0 } }.max() ?? 0
        let scale = peak > 0 ? 96 / peak : 0
        var shapes: [HTML] = []
        for line in lines {
            // A gap in the data breaks the line into runs.
            var runs: [[String]] = [[]]
            for (index, value) in line.values.enumerated() {
                if let value {
                    runs[runs.count - 1].append("\(index * 10 + 5),\(format(100 - value * scale))")
                } else if !(runs.last?.isEmpty ?? true) {
                    runs.append([])
                }
            }
            for run in runs where !run.isEmpty {
                if run.count == 1 {
                    // A lone point has no line to draw: a dot marks it.
                    let xy = run[0].split(separator: ",")
                    let kind = line.secondary ? "dot second" : "dot"
                    shapes.append("<circle class=\"\(kind)\" cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"2.5\"></circle>")
                    continue
                }
                let kind = line.secondary ? "line second" : "line"
                shapes.append("<polyline class=\"\(kind)\" points=\"\(run.joined(separator: " "))\"></polyline>")
            }
        }
        // Invisible columns carry each point's figures as a tooltip.
        for (index, title) in titles.enumerated() {
            shapes.append(
                "<rect x=\"\(index * 10)\" y=\"0\" width=\"10\" height=\"100\" fill=\"transparent\"><title>\(title)</title></rect>")
        }
        return """
            <svg viewBox="0 0 \(width) 100" preserveAspectRatio="none" role="img" aria-label="\(label)">\
            <line class="axis" x1="0" y1="100" x2="\(width)" y2="100"></line>\(shapes)</svg>
            """
    }

    /// A coordinate with at most two decimals.
    static func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = abs(hundredths % 100)
        return fraction == 0 ? "\(hundredths / 100)" : "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
